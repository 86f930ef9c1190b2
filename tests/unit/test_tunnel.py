"""
The relay in memory: flow control wiring, the closing rules and the timers,
with string transports and a Clock.
"""

from __future__ import annotations

from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tunnelgw.config.model import Limits, ServiceConfig
from tunnelgw.registry import adapter as adapter_factory
from tunnelgw.security import Subject
from tunnelgw.testing import FakeClientLeg, HalfCloseStringTransport
from tunnelgw.tunnel.deadlines import Deadlines, pending_on
from tunnelgw.tunnel.legs import BackendProtocol
from tunnelgw.tunnel.registry import TunnelRegistry
from tunnelgw.tunnel.relay import Tunnel


def service(adapter: str = "raw", **limits: float) -> ServiceConfig:
    return ServiceConfig(
        name="svc",
        path="/svc",
        adapter=adapter,
        upstream="tcp:127.0.0.1:1" if adapter == "raw" else None,
        allow_no_subprotocol=True,
        limits=Limits(**limits),  # type: ignore[arg-type]
    )


class TunnelTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.registry = TunnelRegistry()
        self.client = FakeClientLeg()
        self.backend = BackendProtocol()
        self.backend_transport = HalfCloseStringTransport()
        self.backend.makeConnection(self.backend_transport)

    def assert_no_timers(self) -> None:
        """
        No timer is armed: none in the shared queues (L{deadlines}), none
        in the clock but those queues' own.
        """
        self.assertEqual(pending_on(self.clock), 0)
        self.assertEqual(
            [
                c
                for c in self.clock.getDelayedCalls()
                if not isinstance(getattr(c.func, "__self__", None), Deadlines)
            ],
            [],
        )

    def make(self, svc: ServiceConfig | None = None, backend: bool = True) -> Tunnel:
        svc = svc or service()
        return Tunnel(
            reactor=self.clock,
            service=svc,
            subprotocol="binary",
            conn_id="c1",
            peer="192.0.2.1",
            subject=Subject(),
            adapter_factory=adapter_factory(svc.adapter),
            backend=self.backend if backend else None,
            registry=self.registry,
        )

    def test_what_a_read_sends_goes_before_a_close_or_tls(self) -> None:
        """
        Corked (one read of the client), the backend's writes wait; a
        half-close, a close or a STARTTLS coming in that read goes after them.
        """
        t = self.make()
        t.start(self.client)
        t.cork()
        t.client_message(b"a", True)
        t.client_message(b"b", True)
        self.assertEqual(self.backend_transport.value(), b"")
        t.start_backend_tls(object())
        self.assertEqual(self.backend_transport.value(), b"ab")
        t.client_message(b"c", True)
        t.client_closed(True, 1000, "bye")
        self.assertEqual(self.backend_transport.value(), b"abc")
        self.assertTrue(self.backend_transport.write_closed)
        t.uncork()
        self.assertEqual(self.backend_transport.value(), b"abc")

    def test_backend_paused_until_start(self) -> None:
        """
        What the backend sends before the WebSocket is open waits (one
        read; then the backend is not read until the tunnel starts) and is
        the first the client gets.
        """
        self.backend.dataReceived(b"RFB 003.008\n")
        self.assertEqual(self.backend_transport.producerState, "paused")
        tunnel = self.make()
        tunnel.start(self.client)
        self.assertEqual(self.backend_transport.producerState, "producing")
        self.assertIn(tunnel, self.registry.tunnels)
        self.assertEqual(self.client.messages, [(b"RFB 003.008\n", True)])

    def targets(self, transport) -> list:  # type: ignore[no-untyped-def]
        return [gate.target for gate in transport.producer.gates]

    def test_each_side_is_the_streaming_producer_of_the_other(self) -> None:
        self.make().start(self.client)
        self.assertEqual(self.targets(self.client.transport), [self.backend_transport, self.client.transport])
        self.assertTrue(self.client.transport.streaming)
        self.assertEqual(self.targets(self.backend_transport), [self.client.transport])
        self.assertTrue(self.backend_transport.streaming)
        # a full client buffer stops reading the backend, and resumes it
        self.client.transport.producer.pauseProducing()
        self.assertEqual(self.backend_transport.producerState, "paused")
        self.client.transport.producer.resumeProducing()
        self.assertEqual(self.backend_transport.producerState, "producing")

    def test_a_full_client_buffer_stops_reading_the_client(self) -> None:
        """
        A client that sends and never reads (pings whose pongs pile up in
        its write buffer) stops being read while its buffer is over the
        mark, not only the backend.
        """
        self.make().start(self.client)
        self.client.transport.producer.pauseProducing()
        self.assertEqual(self.client.transport.producerState, "paused")
        self.client.transport.producer.resumeProducing()
        self.assertEqual(self.client.transport.producerState, "producing")

    def test_the_client_is_read_again_only_when_nothing_holds_it(self) -> None:
        """
        Both buffers full: the client is read again only once both have
        drained, whichever drains first.
        """
        self.make().start(self.client)
        client, backend = self.client.transport, self.backend_transport
        for first, second in ((client, backend), (backend, client)):
            client.producer.pauseProducing()
            backend.producer.pauseProducing()
            first.producer.resumeProducing()
            self.assertEqual(client.producerState, "paused")
            second.producer.resumeProducing()
            self.assertEqual(client.producerState, "producing")

    def test_a_closing_tunnel_reads_the_client_only_after_the_flush(self) -> None:
        """
        After the backend's EOF the client's buffer drains before the close
        frame; the client is not read meanwhile (its pings would refill it),
        and is read again with the close frame, for its own.
        """
        self.make().start(self.client)
        self.client.transport.producer.pauseProducing()  # full
        self.backend.readConnectionLost()
        self.assertEqual(self.client.transport.producerState, "paused")
        self.assertIsNone(self.client.closed)
        self.client.transport.producer.resumeProducing()  # the flush watcher: all written
        self.assertEqual(self.client.closed, (1000, "backend closed the connection"))
        self.assertEqual(self.client.transport.producerState, "producing")

    def test_one_backend_read_fits_under_the_clients_mark(self) -> None:
        """
        A full backend read plus its frame header stays within the client's
        mark, so a read alone does not pause the backend; a high_water-sized
        message does not pause the client.
        """
        # as on Twisted's file-descriptor transports
        self.client.transport.bufferSize = self.backend_transport.bufferSize = 0
        self.make(service(high_water=65536)).start(self.client)
        self.assertEqual(self.client.transport.bufferSize, 65536 + 14)
        self.assertEqual(self.backend_transport.bufferSize, 65536)

    def test_a_lost_side_does_not_close_the_other(self) -> None:
        """
        Twisted calls stopProducing on a lost transport's producer; that must
        not close the other side (the tunnel's closing rules decide).
        """
        self.make().start(self.client)
        self.backend_transport.producer.stopProducing()
        self.client.transport.producer.stopProducing()
        self.assertFalse(self.client.transport.disconnecting)
        self.assertFalse(self.backend_transport.disconnecting)

    def test_a_chained_backends_close_code_reaches_the_client(self) -> None:
        """
        The inner gateway closed its side with a code (a revocation's 1008):
        after what it sent, the client gets that code.
        """
        tunnel = self.make()
        tunnel.start(self.client)
        # as a MessageLeg reports it: a last message, then the inner's code
        tunnel.backend_message(b"last words", True)
        tunnel.backend_lost(Failure(ConnectionDone()), 1008, "credentials revoked")
        self.client.transport.producer.resumeProducing()  # the flush watcher: all written
        self.assertEqual(self.client.messages, [(b"last words", True)])
        self.assertEqual(self.client.closed, (1008, "credentials revoked"))
        self.assertEqual(tunnel.close_code, 1008)

    def test_a_lost_backend_no_longer_throttles_the_client(self) -> None:
        """
        The backend paused the client (full buffer, or TLS holding writes)
        and is then lost: the client is read again, so its close frame is
        answered instead of being left unread.
        """
        self.make().start(self.client)
        self.backend_transport.producer.pauseProducing()
        self.assertEqual(self.client.transport.producerState, "paused")
        self.backend.connectionLost(Failure(ConnectionDone()))
        self.client.transport.producer.resumeProducing()  # the flush watcher: all written
        self.assertEqual(self.client.closed, (1000, "backend closed the connection"))
        self.assertEqual(self.client.transport.producerState, "producing")

    def test_echo_client_is_its_own_producer(self) -> None:
        self.make(service("echo"), backend=False).start(self.client)
        self.assertEqual(self.targets(self.client.transport), [self.client.transport])

    def test_bytes_both_ways_in_order(self) -> None:
        tunnel = self.make()
        tunnel.start(self.client)
        tunnel.client_message(b"one", True)
        tunnel.client_message(b"two", True)
        self.assertEqual(self.backend_transport.value(), b"onetwo")
        self.backend.dataReceived(b"back")
        self.assertEqual(self.client.messages, [(b"back", True)])
        self.assertEqual((tunnel.bytes_up, tunnel.bytes_down), (6, 4))

    def test_text_refused_with_1003(self) -> None:
        tunnel = self.make()
        tunnel.start(self.client)
        tunnel.client_message(b"text", False)
        assert self.client.closed is not None
        self.assertEqual(self.client.closed[0], 1003)
        self.assertEqual(self.backend_transport.value(), b"")
        self.assertTrue(self.backend_transport.disconnecting)

    def test_text_allowed_when_configured(self) -> None:
        svc = ServiceConfig(
            name="t", path="/t", adapter="raw", upstream="tcp:h:1", allow_text=True, allow_no_subprotocol=True
        )
        tunnel = self.make(svc)
        tunnel.start(self.client)
        tunnel.client_message("héllo".encode(), False)
        self.assertEqual(self.backend_transport.value(), "héllo".encode())

    def test_backend_eof_flushes_then_closes_1000(self) -> None:
        """
        On backend EOF the close frame waits until the client transport has
        drained (a pull producer asked for more), then 1000 is sent.
        """
        tunnel = self.make()
        tunnel.start(self.client)
        self.backend.dataReceived(b"last words")
        self.backend.readConnectionLost()
        self.assertIsNone(self.client.closed)
        self.assertTrue(self.backend_transport.disconnecting)
        watcher = self.client.transport.producer
        self.assertFalse(self.client.transport.streaming)
        watcher.resumeProducing()  # the transport's buffer ran empty
        self.assertEqual(self.client.closed, (1000, "backend closed the connection"))
        self.assertEqual(self.client.messages, [(b"last words", True)])
        self.assertIsNone(self.client.transport.producer)

    def test_client_that_never_drains_is_aborted_after_flush_timeout(self) -> None:
        tunnel = self.make(service(flush_timeout=7))
        tunnel.start(self.client)
        self.backend.readConnectionLost()
        self.clock.advance(6.9)
        self.assertFalse(self.client.aborted)
        self.clock.advance(0.2)
        self.assertTrue(self.client.aborted)

    def test_backend_reset_closes_1011(self) -> None:
        tunnel = self.make()
        tunnel.start(self.client)
        self.backend.connectionLost(Failure(ConnectionLost("reset by peer")))
        self.client.transport.producer.resumeProducing()
        assert self.client.closed is not None
        self.assertEqual(self.client.closed[0], 1011)
        self.assertIn("reset by peer", self.client.closed[1])

    def test_backend_lost_before_start_is_reported_at_start(self) -> None:
        self.backend.connectionLost(Failure(ConnectionDone()))
        tunnel = self.make()
        tunnel.start(self.client)
        self.client.transport.producer.resumeProducing()
        self.assertEqual(self.client.closed, (1000, "backend closed the connection"))

    def test_clean_client_close_half_closes_backend_then_lingers(self) -> None:
        tunnel = self.make(service(flush_timeout=3))
        tunnel.start(self.client)
        tunnel.client_message(b"all of it", True)
        tunnel.client_closed(True, 1000, "bye")
        self.assertEqual(self.backend_transport.value(), b"all of it")
        self.assertTrue(self.backend_transport.write_closed)
        self.assertFalse(self.backend_transport.disconnecting)
        # data after the client's close has nowhere to go
        self.backend.dataReceived(b"late")
        self.assertEqual(self.client.messages, [])
        self.clock.advance(3)
        self.assertTrue(self.backend_transport.aborted)
        self.backend.connectionLost(Failure(ConnectionLost()))
        self.assertNotIn(tunnel, self.registry.tunnels)
        self.assertEqual(tunnel.close_code, 1000)

    def test_the_linger_of_a_half_close_still_bounds_the_close_after_eof(self) -> None:
        tunnel = self.make(service(flush_timeout=3))
        tunnel.start(self.client)
        tunnel.client_closed(True, 1000, "bye")
        self.clock.advance(2)
        self.backend.readConnectionLost()  # our close does not end it
        self.assertTrue(self.backend_transport.disconnecting)
        self.assertFalse(self.backend_transport.aborted)
        self.clock.advance(1)  # 3 s after the client's close, not after the EOF
        self.assertTrue(self.backend_transport.aborted)
        self.backend.connectionLost(Failure(ConnectionLost()))
        self.assertNotIn(tunnel, self.registry.tunnels)

    def test_backend_eof_after_client_close_closes_backend(self) -> None:
        tunnel = self.make()
        tunnel.start(self.client)
        tunnel.client_closed(True, 1000, "bye")
        self.backend.readConnectionLost()
        self.assertTrue(self.backend_transport.disconnecting)

    def test_a_finished_tunnel_leaves_no_timer(self) -> None:
        """
        The backend's EOF after the client's clean close: the backend's
        write side is already shut, so closing it ends the connection at
        once (as Twisted does), and the tunnel is over with no timer left
        behind (one would keep the finished tunnel alive until it fired).
        """

        class ShutTransport(HalfCloseStringTransport):
            def loseConnection(self) -> None:
                super().loseConnection()
                if self.write_closed:
                    self.protocol.connectionLost(Failure(ConnectionDone()))

        backend = BackendProtocol()
        transport = ShutTransport()
        transport.protocol = backend
        backend.makeConnection(transport)
        self.backend = backend
        tunnel = self.make()
        tunnel.start(self.client)
        tunnel.client_closed(True, 1000, "bye")
        self.assertTrue(transport.write_closed)
        backend.readConnectionLost()
        self.assertNotIn(tunnel, self.registry.tunnels)
        self.assert_no_timers()

    def test_unclean_client_close_closes_backend_after_flush(self) -> None:
        tunnel = self.make()
        tunnel.start(self.client)
        tunnel.client_closed(False, 1006, "dropped")
        self.assertTrue(self.backend_transport.disconnecting)
        self.assertFalse(self.backend_transport.write_closed)

    def test_idle_timeout_1001(self) -> None:
        tunnel = self.make(service(idle_timeout=10))
        tunnel.start(self.client)
        self.clock.advance(6)
        tunnel.client_message(b"x", True)
        self.clock.advance(6)
        self.assertIsNone(self.client.closed)
        self.clock.advance(4.1)
        assert self.client.closed is not None
        self.assertEqual(self.client.closed[0], 1001)

    def test_idle_timeout_zero_disables(self) -> None:
        self.make(service(idle_timeout=0)).start(self.client)
        self.clock.advance(10**6)
        self.assertIsNone(self.client.closed)

    def test_all_timers_cancelled_when_done(self) -> None:
        tunnel = self.make()
        tunnel.start(self.client)
        tunnel.client_closed(True, 1000, "bye")
        self.backend.connectionLost(Failure(ConnectionDone()))
        self.assert_no_timers()
        self.assertEqual(len(self.registry), 0)

    def test_peaks_measure_input_backlog(self) -> None:
        tunnel = self.make()
        tunnel.start(self.client)
        self.client.input_buffered = 100
        tunnel.client_message(b"x" * 10, True)
        self.assertEqual(tunnel.peak_up, 100)  # StringTransport buffers nothing itself

    def test_close_event_logged_with_counts(self) -> None:
        from twisted.logger import LogLevel, globalLogPublisher

        events: list[dict] = []  # type: ignore[type-arg]
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        tunnel = self.make()
        tunnel.start(self.client)
        tunnel.client_message(b"12345", True)
        self.clock.advance(2)
        tunnel.client_closed(True, 1000, "bye")
        self.backend.connectionLost(Failure(ConnectionDone()))
        (close,) = [e for e in events if e.get("event") == "tunnel_close"]
        self.assertEqual(close["log_level"], LogLevel.info)
        for key, value in {
            "conn_id": "c1",
            "peer": "192.0.2.1",
            "service": "svc",
            "subprotocol": "binary",
            "code": 1000,
            "bytes_up": 5,
            "bytes_down": 0,
            "duration": 2.0,
        }.items():
            self.assertEqual(close[key], value, key)


class CredentialTests(SynchronousTestCase):
    """
    A tunnel lives only as long as its credentials: expiry, revalidation,
    refresh, logout.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.client = FakeClientLeg()
        self.registry = TunnelRegistry()
        self.verdicts: list[bool] = []
        self.logged_out = 0

    def session(self, interval: float = 0.0) -> object:
        from tunnelgw.security.jaas import LoginSession

        test = self

        class Module:
            def revalidate(self, subject: Subject) -> bool:
                return test.verdicts.pop(0)

            def logout(self) -> None:
                test.logged_out += 1

        return LoginSession("r", [Module()], interval)  # type: ignore[list-item]

    def make(self, subject: Subject) -> Tunnel:
        svc = service("echo")
        tunnel = Tunnel(
            reactor=self.clock,
            service=svc,
            subprotocol=None,
            conn_id="c",
            peer="p",
            subject=subject,
            adapter_factory=adapter_factory("echo"),
            backend=None,
            registry=self.registry,
            session_id="s1",
        )
        tunnel.start(self.client)
        return tunnel

    def test_closed_1008_at_expiry(self) -> None:
        self.make(Subject.of("alice", expires=30.0))
        self.assertIn("s1", self.registry.by_session)
        self.clock.advance(29.9)
        self.assertIsNone(self.client.closed)
        self.clock.advance(0.1)
        self.assertEqual(self.client.closed, (1008, "credentials expired"))

    def test_refresh_moves_expiry(self) -> None:
        tunnel = self.make(Subject.of("alice", expires=30.0))
        self.clock.advance(20)
        tunnel.refresh(Subject.of("alice", expires=90.0))
        self.clock.advance(60)
        self.assertIsNone(self.client.closed)
        tunnel.client_message(b"still flowing", True)
        self.assertEqual(self.client.messages[-1], (b"still flowing", True))
        self.clock.advance(10)
        self.assertEqual(self.client.closed, (1008, "credentials expired"))

    def test_revalidation_closes_revoked_tunnels(self) -> None:
        subject = Subject.of("alice")
        subject.session = self.session(interval=5)
        self.verdicts = [True, True, False]
        self.make(subject)
        self.clock.pump([5, 5])  # one interval at a time: two checks pass
        self.assertIsNone(self.client.closed)
        self.clock.advance(5)
        self.assertEqual(self.client.closed, (1008, "credentials revoked"))

    def test_logout_when_done_and_on_refresh(self) -> None:
        subject = Subject.of("alice")
        subject.session = self.session()
        tunnel = self.make(subject)
        fresh = Subject.of("alice")
        fresh.session = self.session()
        tunnel.refresh(fresh)
        self.assertEqual(self.logged_out, 1)  # the replaced login session
        tunnel.client_closed(True, 1000, "bye")
        self.assertEqual(self.logged_out, 2)
        self.assertNotIn("s1", self.registry.by_session)

    def test_refresh_of_a_closing_tunnel_logs_the_new_login_out(self) -> None:
        tunnel = self.make(Subject.of("alice"))
        tunnel.fail(1011, "backend gone")
        fresh = Subject.of("alice")
        fresh.session = self.session()
        tunnel.refresh(fresh)
        self.assertEqual(self.logged_out, 1)


def test_registry_when_empty() -> None:
    registry = TunnelRegistry()
    fired: list[object] = []
    registry.when_empty().addCallback(fired.append)
    assert fired == [None]  # nothing open: at once
    clock, client, backend = Clock(), FakeClientLeg(), BackendProtocol()
    backend.makeConnection(HalfCloseStringTransport())
    tunnel = Tunnel(
        reactor=clock,
        service=service(),
        subprotocol=None,
        conn_id="c",
        peer="p",
        subject=Subject(),
        adapter_factory=adapter_factory("raw"),
        backend=backend,
        registry=registry,
    )
    tunnel.start(client)
    waiting: list[object] = []
    registry.when_empty().addCallback(waiting.append)
    assert waiting == []
    tunnel.client_closed(True, 1000, "bye")
    backend.connectionLost(Failure(ConnectionDone()))
    assert waiting == [None]


class BackendTLSTests(SynchronousTestCase):
    """
    A TLS backend is connected once its handshake is done and verified.
    """

    def setUp(self) -> None:
        from twisted.internet.interfaces import ISSLTransport
        from zope.interface import directlyProvides

        self.backend = BackendProtocol()
        self.transport = HalfCloseStringTransport()
        directlyProvides(self.transport, ISSLTransport)
        self.backend.makeConnection(self.transport)

    def test_secured_after_the_handshake(self) -> None:
        d = self.backend.secured()
        self.assertNoResult(d)
        self.backend.handshakeCompleted()
        self.assertIs(self.successResultOf(d), self.backend)
        self.assertIs(self.successResultOf(self.backend.secured()), self.backend)

    def test_a_failed_verification_is_not_a_handshake(self) -> None:
        """
        Twisted calls handshakeCompleted after the name check failed and
        aborted the connection; connectionLost brings the reason.
        """
        d = self.backend.secured()
        self.transport.disconnecting = True
        self.backend.handshakeCompleted()
        self.assertNoResult(d)
        self.backend.connectionLost(Failure(ConnectionLost("certificate verify failed")))
        self.failureResultOf(d, ConnectionLost)

    def test_cancelling_aborts(self) -> None:
        d = self.backend.secured()
        d.cancel()
        self.failureResultOf(d)
        self.assertTrue(self.transport.aborted)

    def test_finishing_is_tls_close_notify_not_a_tcp_half_close(self) -> None:
        self.transport.registerProducer(object(), True)
        self.backend.finish()
        self.assertFalse(self.transport.write_closed)
        self.assertTrue(self.transport.disconnecting)
        self.assertIsNone(self.transport.producer)
