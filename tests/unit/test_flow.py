"""
write_now: a write to an idle TCP connection reaches the kernel at once,
with no reactor turn; otherwise it waits its turn, behind what was already
buffered, as Twisted's own write does.  Over a socketpair and a memory
reactor: no real reactor runs.
"""

from __future__ import annotations

import socket
from types import SimpleNamespace
from typing import Any

from twisted.internet import tcp
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from tunnelgw._compat.writes import plain_and_idle as _plain_and_idle
from tunnelgw.tunnel.flow import close_now, half_close_now, pending_bytes, write_now


class WriteNowTests(SynchronousTestCase):
    """
    On a L{tcp.Connection}: looked at layer by layer, as any transport.
    """

    def setUp(self) -> None:
        ours, self.peer = socket.socketpair()
        self.addCleanup(self.peer.close)
        self.addCleanup(ours.close)
        ours.setblocking(False)
        self.peer.setblocking(False)
        self.reactor = MemoryReactor()
        self.protocol = Protocol()
        self.transport = self.connection(ours)
        self.transport.connected = 1  # as tcp.Server and tcp.Client mark themselves
        self.protocol.makeConnection(self.transport)

    def connection(self, sock: socket.socket) -> tcp.Connection:
        return tcp.Connection(sock, self.protocol, self.reactor)  # type: ignore[arg-type]

    def received(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            try:
                chunk = self.peer.recv(1 << 20)
            except BlockingIOError:
                return b"".join(chunks)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    def test_idle_connection_sends_at_once(self) -> None:
        write_now(self.transport, b"one")
        write_now(self.transport, b"two")
        self.assertEqual(self.received(), b"onetwo")
        self.assertEqual(pending_bytes(self.transport), 0)
        self.assertNotIn(self.transport, self.reactor.writers)  # nothing left for the reactor

    def test_behind_buffered_data_it_waits_its_turn(self) -> None:
        self.transport.write(b"first")  # buffered for the reactor's next turn
        write_now(self.transport, b"second")
        self.assertEqual(self.received(), b"")
        self.assertEqual(pending_bytes(self.transport), len(b"firstsecond"))
        self.transport.doWrite()  # the reactor's turn
        self.assertEqual(self.received(), b"firstsecond")

    def test_full_socket_buffers_the_rest_in_order(self) -> None:
        big = bytes(range(256)) * 8192  # 2 MiB, more than a socketpair holds
        write_now(self.transport, big)
        self.assertGreater(pending_bytes(self.transport), 0)
        write_now(self.transport, b"tail")  # joins the queue: no send attempt
        got = b""
        while pending_bytes(self.transport):
            got += self.received()
            self.transport.doWrite()
        got += self.received()
        self.assertEqual(got, big + b"tail")

    def test_closing_connection_is_left_to_the_reactor(self) -> None:
        self.transport.loseConnection()
        write_now(self.transport, b"late")
        self.assertEqual(self.received(), b"")

    def test_tls_started_on_the_connection_is_never_bypassed(self) -> None:
        """
        With TLS started on a TCP connection its write encrypts: bytes must
        go through it, never straight to the socket.
        """
        self.transport.TLS = True
        written: list[bytes] = []
        self.transport.write = written.append  # type: ignore[method-assign]  # the TLS layer's way in
        write_now(self.transport, b"secret")
        self.assertEqual(written, [b"secret"])
        self.assertEqual(self.received(), b"")

    def test_half_closing_connection_goes_through_twisted(self) -> None:
        """
        Asked to half-close, a connection still sends what it is given before
        its FIN, as Twisted's write does: through it, not around it.
        """
        self.transport.loseWriteConnection()
        write_now(self.transport, b"last words")
        self.assertEqual(self.received(), b"last words")
        self.assertEqual(self.peer.recv(10), b"")  # then the half-close

    def test_other_transports_just_write(self) -> None:
        transport = StringTransport()
        write_now(transport, b"bytes")
        self.assertEqual(transport.value(), b"bytes")


class WriteNowServerTests(WriteNowTests):
    """
    On a L{tcp.Server}, one of the connections whose attributes write_now
    reads directly: the same behaviour.
    """

    def connection(self, sock: socket.socket) -> tcp.Connection:
        port: Any = type("Port", (), {"_realPortNumber": 8080})()
        return tcp.Server(sock, self.protocol, ("127.0.0.1", 40000), port, 1, self.reactor)  # type: ignore[arg-type]

    def test_an_idle_connection_half_closes_at_once(self) -> None:
        half_close_now(self.transport)
        self.assertEqual(self.peer.recv(10), b"")  # the FIN, with no reactor turn
        self.assertNotIn(self.transport, self.reactor.writers)
        self.assertTrue(self.transport._writeDisconnected)

    def test_the_half_close_of_an_idle_connection_takes_no_write_turn(self) -> None:
        # no registering for writability and back, no send of nothing:
        # the FIN, and the protocol told its write side is shut
        @implementer(IHalfCloseableProtocol)
        class HalfCloseable(Protocol):
            shut = False

            def writeConnectionLost(self) -> None:  # noqa: N802
                self.shut = True

            def readConnectionLost(self) -> None:  # noqa: N802
                pass

        self.transport.protocol = protocol = HalfCloseable()
        registered: list[Any] = []
        self.patch(self.reactor, "addWriter", registered.append)
        sends: list[bytes] = []
        self.patch(self.transport, "writeSomeData", sends.append)
        half_close_now(self.transport)
        self.assertEqual((registered, sends), ([], []))
        self.assertEqual(self.peer.recv(10), b"")
        self.assertTrue(protocol.shut)
        self.assertTrue(self.transport._writeDisconnected)
        write_now(self.transport, b"late")  # a shut write side takes nothing more
        self.assertEqual(sends, [])
        shutdowns: list[int] = []
        real = self.transport.socket
        self.transport.socket = SimpleNamespace(shutdown=shutdowns.append, close=real.close)  # type: ignore[assignment]
        self.transport.loseConnection()  # the close: no second shutdown
        self.assertEqual(shutdowns, [])
        self.assertEqual(real.fileno(), -1)

    def test_a_streaming_producer_does_not_hold_the_half_close(self) -> None:
        # doWrite, its buffer empty, would go on to the FIN as well
        producer = Protocol()
        self.transport.registerProducer(producer, True)
        half_close_now(self.transport)
        self.assertNotIn(self.transport, self.reactor.writers)
        self.assertEqual(self.peer.recv(10), b"")

    def test_a_half_close_under_a_paused_producer_is_the_reactors(self) -> None:
        producer = Protocol()
        producer.resumeProducing = lambda: None  # type: ignore[attr-defined]
        producer.pauseProducing = lambda: None  # type: ignore[attr-defined]
        self.transport.registerProducer(producer, True)
        self.transport.producerPaused = True
        half_close_now(self.transport)
        # left to Twisted's doWrite, which resumes the producer first
        self.assertIn(self.transport, self.reactor.writers)
        self.assertFalse(self.transport._writeDisconnected)
        with self.assertRaises(BlockingIOError):
            self.peer.recv(10)  # no FIN yet

    def test_a_half_close_waits_behind_buffered_data(self) -> None:
        self.transport.write(b"first")  # buffered for the reactor's next turn
        half_close_now(self.transport)
        self.assertEqual(self.received(), b"")
        self.transport.doWrite()  # the reactor's turn: the data, then the FIN
        self.assertEqual(self.peer.recv(10), b"first")
        self.assertEqual(self.peer.recv(10), b"")

    def test_a_missing_attribute_means_the_careful_path(self) -> None:
        """
        Should another Twisted lack an attribute read directly, the
        connection is not taken for idle: write_now looks at it with care.
        """
        self.assertTrue(_plain_and_idle(self.transport))
        del self.transport._tempDataLen
        self.assertFalse(_plain_and_idle(self.transport))


class ReleaseConnectorTests(SynchronousTestCase):
    """
    A lost outgoing connection is unlinked from its connector, and the
    connector from the endpoint's factory (what only the collector would
    otherwise free); anything else is left as it is.
    """

    def test_unlinks_connection_connector_and_endpoint_factory(self) -> None:
        from types import SimpleNamespace

        from twisted.internet import defer

        from tunnelgw.tunnel.flow import release_connector

        fired: defer.Deferred[None] = defer.succeed(None)
        factory = SimpleNamespace(_onConnection=fired)
        connector = SimpleNamespace(factory=factory)
        factory._connector = connector
        tcp_layer = SimpleNamespace(connector=connector)
        connector.transport = tcp_layer
        tls_layer = SimpleNamespace(transport=tcp_layer)  # TLS over TCP: the connector is under it
        release_connector(tls_layer)
        self.assertIsNone(connector.transport)
        self.assertIsNone(factory._connector)
        self.assertIsNone(factory._onConnection)
        self.assertIs(tcp_layer.connector, connector)  # Twisted reads it after the protocol's connectionLost

    def test_leaves_what_it_does_not_know(self) -> None:
        from types import SimpleNamespace

        from twisted.internet import defer

        from tunnelgw.tunnel.flow import release_connector

        waiting: defer.Deferred[None] = defer.Deferred()
        other = SimpleNamespace()
        factory = SimpleNamespace(_onConnection=waiting, _connector=other)
        connector = SimpleNamespace(factory=factory, transport=other)
        release_connector(SimpleNamespace(connector=connector))
        self.assertIs(connector.transport, other)
        self.assertIs(factory._connector, other)
        self.assertIs(factory._onConnection, waiting)  # not fired: the endpoint still needs it
        release_connector(StringTransport())  # no connector at all


class CloseNowTests(SynchronousTestCase):
    """
    close_now: an idle plain TCP connection ends at once, its FIN sent and
    its connectionLost run; anything else is left to the caller.
    """

    def setUp(self) -> None:
        ours, self.peer = socket.socketpair()
        self.addCleanup(self.peer.close)
        self.addCleanup(ours.close)
        ours.setblocking(False)
        self.reactor = MemoryReactor()
        self.lost: list[Any] = []
        protocol = Protocol()
        protocol.connectionLost = self.lost.append  # type: ignore[method-assign,assignment]
        port: Any = type("Port", (), {"_realPortNumber": 8080})()
        self.transport = tcp.Server(ours, protocol, ("127.0.0.1", 40000), port, 1, self.reactor)  # type: ignore[arg-type]
        self.transport.connected = 1
        protocol.makeConnection(self.transport)

    def test_an_idle_connection_ends_at_once_after_what_it_sent(self) -> None:
        write_now(self.transport, b"close frame")
        self.assertTrue(close_now(self.transport))
        self.assertEqual(self.peer.recv(100), b"close frame")
        self.assertEqual(self.peer.recv(100), b"")  # the FIN, with no reactor turn
        (reason,) = self.lost
        self.assertTrue(reason.check(ConnectionDone))
        self.assertNotIn(self.transport, self.reactor.writers)
        self.assertNotIn(self.transport, self.reactor.readers)

    def test_buffered_data_leaves_the_close_to_the_caller(self) -> None:
        self.transport.write(b"first")  # waits for the reactor's turn
        self.assertFalse(close_now(self.transport))
        self.assertEqual(self.lost, [])
        self.assertFalse(self.transport.disconnecting or self.transport._writeDisconnecting)

    def test_a_registered_producer_leaves_the_close_to_the_caller(self) -> None:
        self.transport.registerProducer(Protocol(), True)  # any object will do here
        self.assertFalse(close_now(self.transport))
        self.assertEqual(self.lost, [])

    def test_other_transports_are_left_to_the_caller(self) -> None:
        other = StringTransport()
        self.assertFalse(close_now(other))
        self.assertFalse(other.disconnecting)
