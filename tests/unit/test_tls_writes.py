"""
tls_writes: a write on Twisted's TLS layer, past its handshake and holding
nothing, is encrypted whole and goes to the kernel at once, in one write;
in any other state it goes through the layer's own C{write}.  A real TLS
layer (the gateway's own TLS context) over a TCP connection on a
socketpair, its peer a pyOpenSSL client on memory BIOs; a memory reactor:
no real reactor runs.
"""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path
from typing import Any

from OpenSSL import SSL

from twisted.internet import tcp
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import SynchronousTestCase

from tests.integration.certs import CA
from tunnelgw._compat.writes import encrypt
from tunnelgw.config.model import TLSListener
from tunnelgw.tls import ReloadableServerTLS, context_factory
from tunnelgw.tunnel.flow import pending_bytes, write_now


class Recorder(Protocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.lost: list[Any] = []

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.received.append(data)

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802
        self.lost.append(reason)


class TLSWritesTests(SynchronousTestCase):
    def setUp(self) -> None:
        directory = Path(tempfile.mkdtemp())
        cert, key = CA(directory).issue("gw", ["127.0.0.1"])
        context = context_factory(TLSListener("tcp:0", str(cert), str(key)), "t")
        ours, self.peer = socket.socketpair()
        for s in (ours, self.peer):
            s.setblocking(False)
            self.addCleanup(s.close)
        self.reactor = MemoryReactorClock()
        self.app = Recorder()
        factory = TLSMemoryBIOFactory(ReloadableServerTLS(context), False, Factory.forProtocol(Protocol))
        factory._clock = self.reactor  # type: ignore[assignment]  # the aggregator's turn, by hand
        self.tls: Any = factory.buildProtocol(("127.0.0.1", 1))
        self.tls.wrappedProtocol = self.app
        port: Any = type("Port", (), {"_realPortNumber": 8443})()
        self.tcp = tcp.Server(ours, self.tls, ("127.0.0.1", 40000), port, 1, self.reactor)  # type: ignore[arg-type]
        self.tls.makeConnection(self.tcp)
        self.client = SSL.Connection(SSL.Context(SSL.TLS_CLIENT_METHOD), None)
        self.client.set_connect_state()
        self.plaintext = b""

    def pump(self) -> None:
        """Both ways until nothing moves: the client's records in, the server's out."""
        for _ in range(20):
            try:
                self.client.do_handshake()
            except SSL.WantReadError:
                pass
            moved = False
            try:
                out = self.client.bio_read(1 << 20)
            except SSL.WantReadError:
                out = b""
            if out:
                self.peer.sendall(out)
                self.tcp.doRead()
                moved = True
            self.tcp.doWrite()  # what the reactor would do with a buffered write
            try:
                got = self.peer.recv(1 << 22)
            except BlockingIOError:
                got = b""
            if got:
                self.client.bio_write(got)
                moved = True
            while True:
                try:
                    self.plaintext += self.client.recv(1 << 16)
                except (SSL.WantReadError, SSL.ZeroReturnError):
                    break
            if not moved:
                return

    def handshake(self) -> None:
        self.pump()
        self.assertTrue(self.tls._handshakeDone)

    def test_past_the_handshake_a_write_is_one_piece_of_records(self) -> None:
        self.handshake()
        data = bytes(range(256)) * 400  # 100 KiB: seven records
        records = encrypt(self.tls, data)
        assert records is not None
        self.assertGreater(len(records), len(data))
        self.assertRaises(BlockingIOError, self.peer.recv, 1)  # the caller writes them, not encrypt
        self.client.bio_write(records)
        while True:
            try:
                self.plaintext += self.client.recv(1 << 16)
            except SSL.WantReadError:
                break
        self.assertEqual(self.plaintext, data)

    def test_write_now_sends_at_once_in_order(self) -> None:
        self.handshake()
        for piece in (b"one", b"two" * 10000, b"three"):
            write_now(self.tls, piece)
        self.assertEqual(self.reactor.getDelayedCalls(), [])  # no turn gathered for
        self.assertEqual(pending_bytes(self.tls), 0)
        self.pump()
        self.assertEqual(self.plaintext, b"one" + b"two" * 10000 + b"three")

    def test_behind_a_gathered_write_it_keeps_its_place(self) -> None:
        self.handshake()
        self.tls.write(b"gathered")  # Twisted's own write: held for the reactor's turn
        self.assertIsNone(encrypt(self.tls, b"next"))
        write_now(self.tls, b"next")
        self.reactor.advance(0)  # the reactor's turn
        self.pump()
        self.assertEqual(self.plaintext, b"gatherednext")

    def test_before_the_handshake_and_when_closing_the_layer_writes(self) -> None:
        self.assertIsNone(encrypt(self.tls, b"early"))
        self.handshake()
        self.tls.loseConnection()
        self.assertIsNone(encrypt(self.tls, b"late"))

    def test_asked_to_read_first_the_rest_waits_in_the_layer(self) -> None:
        """
        OpenSSL refusing a write until it reads (a renegotiation): what was
        encrypted goes out, the rest waits in the layer, as its own write
        would leave it.
        """
        self.handshake()
        connection = self.tls._tlsConnection
        calls: list[int] = []

        class Refusing:
            def __getattr__(self, name: str) -> Any:
                return getattr(connection, name)

            def send(self, data: Any) -> int:
                calls.append(len(data))
                if len(calls) > 1:
                    raise SSL.WantReadError()
                return int(connection.send(data))

        self.tls._tlsConnection = Refusing()
        data = b"x" * 40000
        self.assertEqual(encrypt(self.tls, data), b"")
        self.assertEqual(self.tls._appSendBuffer, [b"x" * (40000 - 16384)])
        self.tls._tlsConnection = connection
        self.pump()
        self.assertEqual(self.plaintext, b"x" * 16384)

    def test_a_tls_error_ends_the_connection(self) -> None:
        self.handshake()
        connection = self.tls._tlsConnection

        class Failing:
            def __getattr__(self, name: str) -> Any:
                return getattr(connection, name)

            def send(self, data: Any) -> int:
                raise SSL.Error([("SSL routines", "", "bad write")])

        self.tls._tlsConnection = Failing()
        self.assertEqual(encrypt(self.tls, b"data"), b"")
        self.assertTrue(self.tls._lostTLSConnection)
        self.assertTrue(self.tcp.disconnecting)

    def test_switched_off_the_layer_writes(self) -> None:
        from tunnelgw._compat import writes

        self.handshake()
        self.patch(writes, "_TLS_WRITES", False)
        self.assertIsNone(encrypt(self.tls, b"data"))
