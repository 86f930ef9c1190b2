"""
The HTTP front in memory: request deadline, routing, health, and a whole
upgrade through autobahn to an echo and to a backend, over string
transports with a fake clock.
"""

from __future__ import annotations

import gc
import json
import struct
import weakref

import autobahn.twisted.websocket as autobahn_twisted
import autobahn.websocket.protocol as autobahn_protocol
import txaio
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tunnelgw.admission.pipeline import AdmissionPipeline
from tunnelgw.config.loader import loads
from tunnelgw.config.model import GatewayConfig
from tunnelgw.front.channel import GatewayChannel
from tunnelgw.front.site import GatewaySite
from tunnelgw.interfaces import IAuthenticator
from tunnelgw.security import PassThroughAuthenticator
from tunnelgw.security.realm import RealmAuthenticator
from tunnelgw.testing import (
    FakeEndpoint,
    HalfCloseStringTransport,
    client_frame,
    cyclic_garbage,
    public_realm,
    server_frames,
)
from tunnelgw.tunnel.relay import Tunnel

CONFIG = (
    """
[gateway]
listen = ["tcp:0"]
handshake_timeout = 5
max_connections_per_address = 3

"""
    + public_realm()
    + """
[services.echo]
path = "/echo"
adapter = "echo"
realm = "public"
allow_no_subprotocol = true
allow_missing_origin = true

[services.raw]
path = "/raw"
adapter = "raw"
realm = "public"
upstream = "tcp:127.0.0.1:5900"
subprotocols = ["binary"]
allow_missing_origin = true
"""
)

UPGRADE = (
    "GET {path} HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
)


class _SiteCase(SynchronousTestCase):
    """
    A site of CONFIG on a memory reactor and clock, with a fake backend
    endpoint, and clients connecting to it over string transports.
    """

    def authenticator(self, config: GatewayConfig) -> IAuthenticator:
        return PassThroughAuthenticator()

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        old_loop = txaio.config.loop
        txaio.config.loop = self.reactor  # autobahn's timers run on our clock
        self.addCleanup(setattr, txaio.config, "loop", old_loop)
        self.endpoint = FakeEndpoint()
        config = loads(CONFIG)
        pipeline = AdmissionPipeline(self.reactor, self.authenticator(config), self.endpoint)
        self.site = GatewaySite(config, self.reactor, pipeline)

    def connect(self) -> tuple[GatewayChannel, HalfCloseStringTransport]:
        channel = self.site.buildProtocol(IPv4Address("TCP", "192.0.2.7", 40000))
        transport = HalfCloseStringTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", 40000))
        transport.protocol = channel
        channel.makeConnection(transport)
        return channel, transport

    # True: each request in two reads, which makes it twisted.web's to
    # parse (the upgrade fast path takes a head that comes in one read)
    split = False

    def send(self, channel: GatewayChannel, data: bytes) -> None:
        if self.split:
            channel.dataReceived(data[:1])
            data = data[1:]
        channel.dataReceived(data)

    def upgrade(self, path: str, extra: str = "") -> tuple[GatewayChannel, HalfCloseStringTransport]:
        channel, transport = self.connect()
        self.send(channel, UPGRADE.format(path=path, extra=extra).encode())
        return channel, transport


class SiteTests(_SiteCase):
    def test_incomplete_request_gets_408_at_the_deadline(self) -> None:
        channel, transport = self.connect()
        channel.dataReceived(b"GET /echo HTTP/1.1\r\n")
        for _ in range(4):  # trickling bytes does not extend the deadline
            self.reactor.advance(1.2)
            channel.dataReceived(b"X: y\r\n")
        self.assertEqual(transport.value(), b"")
        self.reactor.advance(0.3)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 408 "))
        self.assertTrue(transport.disconnecting)
        self.reactor.advance(1)
        self.assertTrue(transport.aborted)

    def test_health(self) -> None:
        channel, transport = self.connect()
        channel.dataReceived(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
        head, body = transport.value().split(b"\r\n\r\n", 1)
        self.assertTrue(head.startswith(b"HTTP/1.1 200 "))
        self.assertIn(b"Server: tunnelgw", head)
        self.assertEqual(json.loads(body)["connections"], 1)
        # an idle keep-alive connection gets the same deadline for its next request
        self.reactor.advance(4.9)
        self.assertFalse(transport.disconnecting)
        self.reactor.advance(0.2)
        self.assertTrue(transport.disconnecting)

    def test_what_autobahn_would_refuse_is_refused_before_the_decision(self) -> None:
        """
        An upgrade without a Host header, or over HTTP/1.0, gets our answer
        (and one logged decision), not a 101 logged and autobahn's 400 sent.
        """
        for request, status in (
            (UPGRADE.format(path="/echo", extra="").replace("Host: gw\r\n", ""), b"400"),
            (UPGRADE.format(path="/echo", extra="").replace("HTTP/1.1", "HTTP/1.0"), b"505"),
        ):
            channel, transport = self.connect()
            self.send(channel, request.encode())
            head, body = transport.value().split(b"\r\n\r\n", 1)
            self.assertEqual(head.split()[1], status, head)
            self.assertTrue(body)

    def test_unknown_path_404(self) -> None:
        channel, transport = self.connect()
        self.send(channel, b"GET /nope HTTP/1.1\r\nHost: gw\r\n\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 404 "))

    def test_refusal_has_status_reason_and_length(self) -> None:
        _, transport = self.upgrade("/raw", "Sec-WebSocket-Protocol: mqtt\r\n")
        head, body = transport.value().split(b"\r\n\r\n", 1)
        self.assertTrue(head.startswith(b"HTTP/1.1 400 Bad Request"))
        self.assertIn(f"Content-Length: {len(body)}".encode(), head)
        self.assertIn(b"mqtt", body)

    def test_echo_upgrade_and_messages(self) -> None:
        channel, transport = self.upgrade("/echo")
        head, rest = transport.value().split(b"\r\n\r\n", 1)
        self.assertTrue(head.startswith(b"HTTP/1.1 101 "))
        self.assertIn(b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", head)
        self.assertNotIn(b"Sec-WebSocket-Protocol", head)
        transport.clear()
        ws = transport.protocol  # autobahn took the transport over
        ws.dataReceived(client_frame(0x1, "héllo".encode()) + client_frame(0x2, b"\x00\xff"))
        self.assertEqual(server_frames(transport.value()), [(0x1, "héllo".encode()), (0x2, b"\x00\xff")])
        self.assertEqual(len(self.site.registry), 1)
        self.assertEqual(self.site.limiter.total, 1)  # the lease went with the tunnel

    def test_text_that_cannot_be_utf8_closes_1007_at_once(self) -> None:
        """
        RFC 6455 8.1: a text message that is no UTF-8 fails the connection
        with 1007, at the frame that makes it so, not at the message's end.
        """
        for first, second in ((b"ok \xed", b"\xa0\x80"), (b"ok \xf4", b"\x90"), (b"ok \xc3", b"\x28")):
            channel, transport = self.upgrade("/echo")
            transport.clear()
            ws = transport.protocol
            ws.dataReceived(client_frame(0x1, first, fin=False))
            self.assertEqual(transport.value(), b"")
            ws.dataReceived(client_frame(0x0, second, fin=False))
            ((opcode, payload),) = server_frames(transport.value())
            self.assertEqual((opcode, struct.unpack("!H", payload[:2])[0]), (0x8, 1007), (first, second))

    def test_a_code_point_cut_between_frames_is_text(self) -> None:
        channel, transport = self.upgrade("/echo")
        transport.clear()
        ws = transport.protocol
        ws.dataReceived(
            client_frame(0x1, "h\u00e9".encode()[:2], fin=False) + client_frame(0x0, b"\xa9", fin=True)
        )
        self.assertEqual(server_frames(transport.value()), [(0x1, "h\u00e9".encode())])

    def test_max_fragments_frames_make_a_message_one_more_closes_1009(self) -> None:
        """
        limits.max_fragments (1024 by default): a message may come in that
        many frames; the next frame of it closes with 1009 at once, before
        the message's end (a million 1-byte frames took 17 s of CPU).
        """
        channel, transport = self.upgrade("/echo")
        transport.clear()
        ws = transport.protocol
        frames = [client_frame(0x2 if i == 0 else 0x0, b"x", fin=(i == 1023)) for i in range(1024)]
        ws.dataReceived(b"".join(frames))
        self.assertEqual(server_frames(transport.value()), [(0x2, b"x" * 1024)])
        transport.clear()
        more = [client_frame(0x2 if i == 0 else 0x0, b"y", fin=False) for i in range(1025)]
        ws.dataReceived(b"".join(more) + client_frame(0x0, b"never", fin=True))
        ((opcode, payload),) = server_frames(transport.value())
        self.assertEqual((opcode, struct.unpack("!H", payload[:2])[0]), (0x8, 1009))
        self.assertIn(b"more than 1024 frames", payload)
        # RFC 6455 7.1.7: nothing more is processed (not even a ping or a
        # close); the FIN follows the close frame
        self.assertTrue(transport.write_closed)
        transport.clear()
        ws.dataReceived(client_frame(0x9, b"ping") * 1000 + client_frame(0x8, b"\x03\xe8"))
        self.assertEqual(transport.value(), b"")
        self.reactor.advance(10)  # the close handshake timer ends it
        self.assertTrue(transport.aborted)

    def test_sync_and_chopped_writes_still_work_without_the_queue(self) -> None:
        """
        An open tunnel does without autobahn's write queue (memory); a sync
        or chopped write (which a tunnel never makes) gets one back.
        """
        channel, transport = self.upgrade("/echo")
        transport.clear()
        ws = transport.protocol
        self.assertEqual(len(ws.send_queue), 0)
        ws.sendMessage(b"sync", isBinary=True, sync=True)
        ws.sendData(b"\x82\x07chopped", chopsize=3)  # an unmasked binary frame, in 3-byte writes
        for _ in range(10):
            self.reactor.advance(0.01)
        self.assertEqual(server_frames(transport.value()), [(0x2, b"sync"), (0x2, b"chopped")])

    def test_simultaneous_close_flushes_our_close_frame(self) -> None:
        """
        The tunnel closes and the client's own close frame arrives before
        ours has left: the connection is closed gracefully (our close frame
        and all data before it are sent), not reset; a client that never
        reads is aborted after the close handshake timeout.
        """
        channel, transport = self.upgrade("/echo")
        transport.clear()
        ws = transport.protocol
        ws.tunnel.fail(1008, "policy")
        ws.dataReceived(client_frame(0x8, b"\x03\xe8"))
        self.assertEqual(server_frames(transport.value()), [(0x8, b"\x03\xf0policy")])
        self.assertTrue(transport.disconnecting)
        self.assertFalse(transport.aborted)
        self.reactor.advance(10)
        self.assertTrue(transport.aborted)

    def test_compression_offer_is_declined(self) -> None:
        """
        Browsers always offer permessage-deflate; the upgrade succeeds
        without it (compression is off).
        """
        channel, transport = self.upgrade(
            "/echo", "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        )
        head, _ = transport.value().split(b"\r\n\r\n", 1)
        self.assertTrue(head.startswith(b"HTTP/1.1 101 "))
        self.assertNotIn(b"Sec-WebSocket-Extensions", head)
        transport.clear()
        transport.protocol.dataReceived(client_frame(0x1, b"plain"))
        self.assertEqual(server_frames(transport.value()), [(0x1, b"plain")])

    def test_a_malformed_compression_offer_is_ignored(self) -> None:
        """
        Extensions are never accepted, so an offer is not even parsed: a
        malformed one gets the 101 its admission logged, without it.
        """
        _, transport = self.upgrade("/echo", "Sec-WebSocket-Extensions: permessage-deflate; bogus=1;;\r\n")
        head, _ = transport.value().split(b"\r\n\r\n", 1)
        self.assertTrue(head.startswith(b"HTTP/1.1 101 "))
        self.assertNotIn(b"Sec-WebSocket-Extensions", head)

    def test_autobahn_does_not_parse_the_head_again(self) -> None:
        """
        The head autobahn answers was parsed and checked for admission:
        autobahn writes the 101 from it without parsing it a second time.
        """

        def parse(*args: object) -> None:
            raise AssertionError("autobahn parsed an admitted head")

        self.patch(autobahn_protocol, "parseHttpHeader", parse)
        _, transport = self.upgrade("/raw", "Sec-WebSocket-Protocol: foo, binary\r\n")
        self.endpoint.succeed()
        head, _ = transport.value().split(b"\r\n\r\n", 1)
        self.assertTrue(head.startswith(b"HTTP/1.1 101 "))
        self.assertIn(b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", head)
        self.assertIn(b"Sec-WebSocket-Protocol: binary", head)
        self.assertIn(b"X-Tunnel-Session: " + transport.protocol.session_id.encode(), head)

    def test_no_transport_details_and_no_message_events(self) -> None:
        """
        autobahn's WAMP transport details (process and thread ids, TLS
        channel binding) are not built for a tunnel, and its "message"
        event for observers is not fired for a message of one frame (the
        shortcut whole_frames); a message in fragments goes autobahn's way.
        """
        fired: list[object] = []

        def unused(*args: object, **kwargs: object) -> None:
            raise AssertionError("called for a tunnel")

        self.patch(autobahn_twisted, "create_transport_details", unused)
        fire = autobahn_protocol.WebSocketProtocol.fire

        def counted(self: object, *args: object, **kwargs: object) -> object:
            fired.append(args)
            return fire(self, *args, **kwargs)

        self.patch(autobahn_protocol.WebSocketProtocol, "fire", counted)
        _, transport = self.upgrade("/echo")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 101 "))
        transport.clear()
        ws = transport.protocol
        self.assertEqual(ws.peer, "tcp4:192.0.2.7:40000")
        ws.dataReceived(client_frame(0x1, b"one") + client_frame(0x2, b"two"))
        self.assertEqual(fired, [])
        ws.dataReceived(client_frame(0x2, b"thr", fin=False) + client_frame(0x0, b"ee"))
        self.assertEqual(server_frames(transport.value()), [(0x1, b"one"), (0x2, b"two"), (0x2, b"three")])

    def test_autobahn_never_answers_a_head_that_was_not_admitted(self) -> None:
        ws = self.site.upgrades[b"/echo"].factory.buildProtocol(IPv4Address("TCP", "192.0.2.7", 40000))
        ws.admission = None
        transport = HalfCloseStringTransport()
        transport.registerProducer(ws, True)  # autobahn unregisters one as it drops the connection
        ws.makeConnection(transport)
        ws.dataReceived(UPGRADE.format(path="/echo", extra="").encode())
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 500 "))
        self.assertTrue(transport.disconnecting)

    def test_a_fragment_in_the_uri_is_refused(self) -> None:
        """
        RFC 6455 3: fragment identifiers MUST NOT be used on WebSocket URIs.
        """
        for path in ("/echo?x=1#top", "/echo?#"):
            _, transport = self.upgrade(path)
            head, body = transport.value().split(b"\r\n\r\n", 1)
            self.assertTrue(head.startswith(b"HTTP/1.1 400 "), path)
            self.assertIn(b"fragment", body)

    def test_raw_upgrade_waits_for_backend_then_relays(self) -> None:
        _, transport = self.upgrade("/raw", "Sec-WebSocket-Protocol: foo, binary\r\n")
        self.assertEqual(transport.value(), b"")  # no 101 before the backend is up
        backend, backend_transport = self.endpoint.succeed()
        head, _ = transport.value().split(b"\r\n\r\n", 1)
        self.assertIn(b"Sec-WebSocket-Protocol: binary", head)
        transport.clear()
        ws = transport.protocol
        ws.dataReceived(client_frame(0x2, b"to backend"))
        self.assertEqual(backend_transport.value(), b"to backend")
        backend.dataReceived(b"RFB 003.008\n")
        self.assertEqual(server_frames(transport.value()), [(0x2, b"RFB 003.008\n")])

    def test_the_messages_of_one_read_reach_the_backend_in_one_write(self) -> None:
        _, transport = self.upgrade("/raw", "Sec-WebSocket-Protocol: binary\r\n")
        _, backend_transport = self.endpoint.succeed()
        writes: list[tuple[bytes, bool]] = []
        write = backend_transport.write

        def recorded(data: bytes) -> None:
            writes.append((data, backend_transport.write_closed))
            write(data)

        backend_transport.write = recorded  # type: ignore[method-assign]
        ws = transport.protocol
        ws.dataReceived(client_frame(0x2, b"one") + client_frame(0x2, b"two"))
        ws.dataReceived(client_frame(0x2, b"three") + client_frame(0x8, struct.pack(">H", 1000)))
        # one write a read, each before the backend's half-close
        self.assertEqual(writes, [(b"onetwo", False), (b"three", False)])

    def test_a_tls_read_reaches_autobahn_whole_and_before_the_close(self) -> None:
        """
        The plaintext a TLS layer hands over record by record during one
        read (L{tunnelgw.websocket.tls_reads}) is parsed once, whole; one
        still waiting when the connection is lost is parsed before.
        """
        _, transport = self.upgrade("/raw", "Sec-WebSocket-Protocol: binary\r\n")
        _, backend_transport = self.endpoint.succeed()
        ws = transport.protocol
        frames = client_frame(0x2, b"one") + client_frame(0x2, b"two")
        ws.batch = []
        ws.dataReceived(frames[:5])  # records cut anywhere
        ws.dataReceived(frames[5:])
        self.assertEqual(backend_transport.value(), b"")
        ws.deliver_batch()
        self.assertEqual(backend_transport.value(), b"onetwo")
        ws.batch = [client_frame(0x2, b"three")]
        ws.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(backend_transport.value(), b"onetwothree")

    def test_frames_sent_before_the_101_reach_the_backend(self) -> None:
        """
        Bytes the client sent after its head, before its 101 (the backend
        still connecting), are not lost: autobahn reads them as frames
        once the connection is its.
        """
        channel, transport = self.upgrade("/raw", "Sec-WebSocket-Protocol: binary\r\n")
        channel.dataReceived(client_frame(0x2, b"early"))
        channel.dataReceived(client_frame(0x2, b" and more"))
        _, backend_transport = self.endpoint.succeed()
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 101 "))
        self.assertEqual(backend_transport.value(), b"early and more")

    def test_client_gone_during_backend_connect_abandons_backend(self) -> None:
        channel, transport = self.upgrade("/raw", "Sec-WebSocket-Protocol: binary\r\n")
        from twisted.internet.error import ConnectionLost
        from twisted.python.failure import Failure

        channel.connectionLost(Failure(ConnectionLost()))
        ((connecting, _),) = self.endpoint.pending
        self.assertTrue(connecting.called)  # cancelled
        self.assertEqual(self.site.limiter.total, 0)

    def test_declared_body_over_the_limit_is_413_before_reading_it(self) -> None:
        channel, transport = self.connect()
        channel.dataReceived(
            b"POST /tunnelgw/refresh HTTP/1.1\r\nHost: gw\r\nContent-Length: 10000000\r\n\r\n" + b"x" * 1000
        )
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 413 "))
        self.assertTrue(transport.disconnecting)

    def test_chunked_body_over_the_limit_is_413(self) -> None:
        channel, transport = self.connect()
        channel.dataReceived(b"POST /healthz HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 30000
        for _ in range(3):  # 90,000 bytes > 64 KiB
            channel.dataReceived(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 413 "))
        self.assertTrue(transport.disconnecting)

    def test_small_body_is_fine(self) -> None:
        channel, transport = self.connect()
        channel.dataReceived(b"POST /healthz HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n\r\nhello")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 405 "))  # read, then refused as a POST


class TwistedWebSiteTests(SiteTests):
    """
    The same, every request parsed by twisted.web (not the fast path).
    """

    split = True


class NoCyclesTests(_SiteCase):
    """
    A tunnel that is over is freed by reference counting alone: the HTTP
    channel and request it came from, its WebSocket, its backend leg, its
    adapter and its login session leave no cycle behind.  A busy gateway
    otherwise spends a large share of its CPU in the garbage collector,
    scanning every long-lived object to find them.
    """

    def authenticator(self, config: GatewayConfig) -> IAuthenticator:
        return RealmAuthenticator(config)  # with a login session to free

    def setUp(self) -> None:
        super().setUp()
        # the tunnel's close event names it as its source; kept in the log
        # buffer of a process that never began logging, it would keep it
        self.patch(Tunnel, "log", Logger(observer=lambda event: None))
        gc.collect()
        gc.disable()
        self.addCleanup(gc.enable)

    def assert_freed(self, path: str, extra: str = "") -> None:
        # other tests' leftovers may become garbage meanwhile: only what
        # this connection makes counts
        before = {id(o) for o in gc.get_objects()}
        channel, transport = self.upgrade(path, extra)
        backend = backend_transport = None
        if self.endpoint.pending:
            backend, backend_transport = self.endpoint.succeed()
        ws = transport.protocol
        tunnel = ws.tunnel
        self.assertIsNotNone(tunnel)
        watched = [weakref.ref(o) for o in (channel, ws, tunnel)]
        if backend is not None:
            watched.append(weakref.ref(backend))
        ws.dataReceived(client_frame(0x2, b"bye") + client_frame(0x8, b"\x03\xe8"))
        ws.connectionLost(Failure(ConnectionDone()))
        del transport.protocol  # as a real transport does once lost
        if backend is not None:
            backend.readConnectionLost()
            backend.connectionLost(Failure(ConnectionDone()))
        self.reactor.advance(60)  # every timer fires or is cancelled
        self.assertEqual(len(self.site.registry), 0)
        del channel, transport, ws, tunnel, backend, backend_transport
        self.endpoint.pending.clear()
        self.assertEqual([ref() for ref in watched if ref() is not None], [])
        # and nothing of the connection was left in a cycle
        self.assertEqual(cyclic_garbage(before, ("tunnelgw", "twisted", "autobahn")), [])

    def test_echo(self) -> None:
        self.assert_freed("/echo")

    def test_raw(self) -> None:
        self.assert_freed("/raw", "Sec-WebSocket-Protocol: binary\r\n")


class TwistedWebNoCyclesTests(NoCyclesTests):
    """
    The same, the upgrade parsed by twisted.web (not the fast path).
    """

    split = True


def _answer(data: bytes) -> tuple[bytes, list[tuple[bytes, bytes]], bytes]:
    """
    A response as status line, sorted headers (names in lower case: the
    fast path keeps a header's spelling, twisted.web capitalizes it; less
    Date and the random session id) and the rest.
    """
    head, _, rest = data.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = [(name.lower(), value) for name, _, value in (line.partition(b":") for line in lines)]
    return status, sorted(h for h in headers if h[0] not in (b"date", b"x-tunnel-session")), rest


class FastPathTests(_SiteCase):
    """
    An upgrade that comes whole in the first read skips twisted.web, and
    gets the answer twisted.web's path would give it.
    """

    def test_twisted_web_does_not_parse_it(self) -> None:
        def parse(*args: object) -> None:
            raise AssertionError("twisted.web parsed a fast-path upgrade")

        self.patch(GatewayChannel, "lineReceived", parse)
        _, transport = self.upgrade("/echo")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 101 "))

    def test_same_answers_as_twisted_web(self) -> None:
        for request in (
            UPGRADE.format(path="/echo", extra=""),
            UPGRADE.format(path="/echo?token=a%20b&x=1", extra=""),
            UPGRADE.format(path="/echo?token=a#b", extra=""),
            UPGRADE.format(path="/raw", extra="Sec-WebSocket-Protocol: mqtt\r\n"),
            UPGRADE.format(
                path="/raw", extra="Sec-WebSocket-Protocol: binary\r\nSec-WebSocket-Protocol: binary\r\n"
            ),
            UPGRADE.format(path="/raw", extra=""),
            UPGRADE.format(path="/echo", extra="Origin: https://elsewhere.example\r\n"),
            UPGRADE.format(
                path="/echo", extra="Sec-WebSocket-Extensions: a\r\nSec-WebSocket-Extensions: b\r\n"
            ),
            UPGRADE.format(path="/echo", extra="").replace("Host: gw\r\n", ""),
            UPGRADE.format(path="/echo", extra="").replace("Host: gw", "Host: gw:http"),
            UPGRADE.format(path="/echo", extra="").replace("Version: 13", "Version: 8"),
            UPGRADE.format(path="/echo", extra="").replace("Upgrade: websocket\r\n", ""),
            UPGRADE.format(path="/echo", extra="").replace("dGhlIHNhbXBsZSBub25jZQ==", "short"),
            "GET /echo HTTP/1.1\r\nHost: gw\r\n\r\n",
        ):
            answers = []
            for split in (False, True):
                self.split = split
                channel, transport = self.connect()
                self.send(channel, request.encode())
                if self.endpoint.pending:
                    self.endpoint.succeed()
                answers.append(_answer(transport.value()))
                self.assertTrue(transport.value(), request)
                transport.protocol.connectionLost(Failure(ConnectionDone()))  # the channel, or autobahn's
                self.assertEqual(self.site.limiter.total, 0)
            self.assertEqual(answers[0], answers[1], request)

    def test_an_upgrade_with_a_body_is_refused_400(self) -> None:
        """
        A body on an upgrade (Content-Length > 0, or Transfer-Encoding) is
        refused on both paths, and its bytes are never read as frames (they
        were: 101, then the "body", a masked frame, was echoed).
        """
        frame = client_frame(0x1, b"smuggled")
        for extra, body, reason in (
            (f"Content-Length: {len(frame)}\r\n", frame, b"has no body"),
            (
                "Transfer-Encoding: chunked\r\n",
                b"%x\r\n" % len(frame) + frame + b"\r\n0\r\n\r\n",
                b"has no body",
            ),
            # both: a smuggling shape, which twisted.web refuses itself
            ("Content-Length: 0\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n", b""),
        ):
            for split in (False, True):
                self.split = split
                channel, transport = self.connect()
                self.send(channel, UPGRADE.format(path="/echo", extra=extra).encode() + body)
                status, _, rest = _answer(transport.value())
                self.assertEqual(status, b"HTTP/1.1 400 Bad Request", (extra, split))
                self.assertIn(reason, rest, (extra, split))
                self.assertNotIn(b"smuggled", transport.value())
                self.assertTrue(transport.disconnecting, (extra, split))
                self.assertEqual(len(self.site.registry), 0)
                transport.protocol.connectionLost(Failure(ConnectionDone()))
        # an empty body is no body
        self.split = False
        _, transport = self.upgrade("/echo", "Content-Length: 0\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 101 "))

    def test_over_long_request_line_414_header_line_431(self) -> None:
        for split in (False, True):
            self.split = split
            for request, status in (
                ("GET /echo?" + "a" * 17000 + " HTTP/1.1\r\nHost: gw\r\n\r\n", b"414 "),
                ("GET /echo HTTP/1.1\r\nHost: gw\r\nX-Big: " + "a" * 17000 + "\r\n\r\n", b"431 "),
                ("GET /echo HTTP/1.1\r\nX-Big: " + "a" * 17000, b"431 "),  # not even whole
            ):
                channel, transport = self.connect()
                self.send(channel, request.encode())
                self.assertTrue(
                    transport.value().startswith(b"HTTP/1.1 " + status), (split, transport.value())
                )
                self.assertTrue(transport.disconnecting)
                channel.connectionLost(Failure(ConnectionDone()))

    def test_a_bare_lf_head_is_refused_400_at_once(self) -> None:
        for split in (False, True):
            self.split = split
            for request in (
                UPGRADE.format(path="/echo", extra="").replace("\r\n", "\n"),
                UPGRADE.format(path="/echo", extra="").replace("Host: gw\r\n", "Host: gw\n"),
                "GET /healthz HTTP/1.1\nHost: gw\n",  # an incomplete head, too
            ):
                channel, transport = self.connect()
                self.send(channel, request.encode())
                self.assertTrue(transport.value().startswith(b"HTTP/1.1 400 "), (split, request))
                self.assertTrue(transport.disconnecting)
                channel.connectionLost(Failure(ConnectionDone()))
        # a CRLF split across two reads is no bare LF
        channel, transport = self.connect()
        for part in (b"GET /healthz HTTP/1.1\r", b"\nHost: gw\r", b"\n\r", b"\n"):
            channel.dataReceived(part)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 200 "), transport.value())

    def test_a_frame_in_the_heads_read_is_kept_on_both_services(self) -> None:
        for path, extra in (("/echo", ""), ("/raw", "Sec-WebSocket-Protocol: binary\r\n")):
            for split in (False, True):
                self.split = split
                channel, transport = self.connect()
                self.send(
                    channel, UPGRADE.format(path=path, extra=extra).encode() + client_frame(0x2, b"early")
                )
                if self.endpoint.pending:
                    _, backend = self.endpoint.succeed()
                ws = transport.protocol
                if path == "/echo":
                    _, _, rest = transport.value().partition(b"\r\n\r\n")
                    self.assertEqual(server_frames(rest), [(0x2, b"early")], (path, split, transport.value()))
                else:
                    self.assertEqual(backend.value(), b"early", (path, split))
                ws.connectionLost(Failure(ConnectionDone()))

    def test_a_refusal_closes_the_connection_on_twisted_webs_path_too(self) -> None:
        self.split = True
        channel, transport = self.upgrade("/raw", "Sec-WebSocket-Protocol: mqtt\r\n")
        channel.dataReceived(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")  # not read: the connection closes
        self.assertEqual(transport.value().count(b"HTTP/1.1 "), 1)
        self.assertTrue(transport.disconnecting)

    def test_early_bytes_are_bounded(self) -> None:
        """
        Past EARLY_BYTES before the 101, the gateway stops reading (the
        kernel's buffers hold the rest), and reads again once the tunnel
        is open.
        """
        channel, transport = self.upgrade("/raw", "Sec-WebSocket-Protocol: binary\r\n")
        chunk = client_frame(0x2, b"x" * 1000)
        while transport.producerState == "producing":
            channel.dataReceived(chunk)
        self.assertLessEqual(
            sum(map(len, channel._early or [])), GatewayChannel.EARLY_BYTES + len(chunk) + len(UPGRADE) + 64
        )
        _, backend_transport = self.endpoint.succeed()
        self.assertNotEqual(transport.producerState, "paused")
        self.assertTrue(backend_transport.value().startswith(b"x" * 1000))

    def test_a_refusal_closes_the_connection(self) -> None:
        channel, transport = self.upgrade("/raw", "Sec-WebSocket-Protocol: mqtt\r\n")
        channel.dataReceived(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")  # not read: the connection closes
        status, headers, body = _answer(transport.value())
        self.assertEqual(status, b"HTTP/1.1 400 Bad Request")
        self.assertIn((b"connection", b" close"), headers)
        self.assertTrue(body.endswith(b"\n"))
        self.assertNotIn(b"HTTP/1.1", body)  # the request after it was not answered
        self.assertTrue(transport.disconnecting)
        channel.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.site.limiter.total, 0)


class TLSReadBatcherTests(SynchronousTestCase):
    def test_one_read_one_delivery_the_rest_is_the_tls_layers(self) -> None:
        from twisted.internet.interfaces import IHalfCloseableProtocol
        from zope.interface import directlyProvides

        from tunnelgw.websocket.tls_reads import HalfCloseableBatcher, TLSReadBatcher

        delivered: list[bytes] = []

        class Leg:
            batch: list[bytes] | None = None

            def dataReceived(self, data: bytes) -> None:
                if self.batch is not None:
                    self.batch.append(data)
                else:
                    delivered.append(data)

            def deliver_batch(self) -> None:
                batch, self.batch = self.batch, None
                if batch:
                    self.dataReceived(b"".join(batch))

        leg = Leg()
        lost: list[object] = []

        class TLS:
            def dataReceived(self, data: bytes) -> None:  # two records of plaintext
                leg.dataReceived(data[:2])
                leg.dataReceived(data[2:])

            def connectionLost(self, reason: object) -> None:
                lost.append(reason)

        tls = TLS()
        directlyProvides(tls, IHalfCloseableProtocol)
        batcher = HalfCloseableBatcher(tls, leg)  # type: ignore[arg-type]
        self.assertFalse(IHalfCloseableProtocol.providedBy(TLSReadBatcher(tls, leg)))  # type: ignore[arg-type]
        batcher.dataReceived(b"abcd")
        self.assertEqual(delivered, [b"abcd"])
        self.assertTrue(IHalfCloseableProtocol.providedBy(batcher))
        batcher.connectionLost("gone")
        self.assertEqual(lost, ["gone"])
