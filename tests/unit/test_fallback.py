"""
The fallback transport in memory: sessions opened through the admission
pipeline, messages down on streams and polls, up in POSTs, resumed after
a cut, bounded both ways, closed with the tunnel's codes; and every
refusal of the WebSocket path with its fallback twin.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import txaio
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from tunnelgw.admission.pipeline import AdmissionPipeline
from tunnelgw.cluster.engine import LocalEngine
from tunnelgw.cluster.revocations import Revocation
from tunnelgw.config.loader import loads
from tunnelgw.errors import Refusal
from tunnelgw.fallback.framing import BINARY, CLOSE, HEARTBEAT, PAD, TEXT, FrameParser, encode
from tunnelgw.front.site import GatewaySite
from tunnelgw.interfaces import IAuthenticator
from tunnelgw.security import Subject
from tunnelgw.testing import FakeEndpoint, HalfCloseStringTransport

ORIGIN = "https://app.example"
TYPE = "application/x-tunnelgw-fallback"

CONFIG = f"""
[gateway]
listen = ["tcp:0"]

[realms.users]
[[realms.users.modules]]
module = "anonymous"
flag = "required"

[fallback]
idle_timeout = 30
heartbeat = 10
stream_time = 25
poll_time = 20
padding = 64

[services.echo]
path = "/echo"
adapter = "echo"
realm = "users"
subprotocols = ["echo"]
origins = ["{ORIGIN}"]
fallback = true
require_roles = ["user"]

[services.echo.limits]
max_message_size = 1000
max_frame_size = 1000
high_water = 4096

[services.raw]
path = "/raw"
adapter = "raw"
realm = "users"
upstream = "tcp:127.0.0.1:5900"
subprotocols = ["binary"]
origins = ["{ORIGIN}"]
fallback = true

[services.raw.limits]
high_water = 4096

[services.plain]
path = "/plain"
adapter = "echo"
realm = "users"
subprotocols = ["echo"]
origins = ["{ORIGIN}"]
"""


@implementer(IAuthenticator)
class BearerUsers:
    """C{Authorization: Bearer NAME} logs NAME in with role user; C{Bearer guest} has no role."""

    def authenticate(self, request: Any, service: Any) -> Subject:
        values = request.headers.get("authorization", [])
        if len(values) != 1 or not values[0].startswith("Bearer "):
            raise Refusal(401, "credentials required", {"WWW-Authenticate": "Bearer"})
        name = values[0][len("Bearer ") :]
        if name == "revoked":
            raise Refusal(401, "these credentials are not valid", {"WWW-Authenticate": "Bearer"})
        roles = () if name == "guest" else ("user",)
        expires = {"expires": 20.0} if name == "brief" else {}  # a token good until t=20
        subject = Subject.of(name, roles, **expires)
        if service.require_roles and not (service.require_roles & subject.roles):
            raise Refusal(403, "a required role is missing")
        return subject


class Response:
    def __init__(self, data: bytes) -> None:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ")[1]) if data else 0  # 0: no answer yet
        self.headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        if self.headers.get("transfer-encoding") == "chunked":
            body = b""
            while rest:
                size_line, _, rest = rest.partition(b"\r\n")
                size = int(size_line, 16)
                if size == 0:
                    break
                body += rest[:size]
                rest = rest[size + 2 :]
            self.body = body
        else:
            self.body = rest

    def frames(self) -> list[tuple[int, int, bytes]]:
        return [(f.kind, f.seq, f.payload) for f in FrameParser(1 << 20, 1 << 24).feed(self.body)]

    def json(self) -> Any:
        return json.loads(self.body)


class FallbackCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        old_loop = txaio.config.loop
        txaio.config.loop = self.reactor
        self.addCleanup(setattr, txaio.config, "loop", old_loop)
        self.endpoint = FakeEndpoint()
        config = loads(CONFIG)
        authenticator = BearerUsers()
        pipeline = AdmissionPipeline(self.reactor, authenticator, self.endpoint)
        self.site = GatewaySite(config, self.reactor, pipeline, authenticator)

    def request(
        self,
        path: str,
        kind: str | None,
        body: bytes = b"",
        session: str | None = None,
        *,
        user: str | None = "alice",
        origin: str | None = ORIGIN,
        ack: int | None = None,
        protocol: str | None = None,
        method: str = "POST",
        content_type: str = TYPE,
        extra: str = "",
    ) -> tuple[HalfCloseStringTransport, Any]:
        channel = self.site.buildProtocol(IPv4Address("TCP", "192.0.2.7", 40000))
        transport = HalfCloseStringTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", 40000))
        transport.protocol = channel
        channel.makeConnection(transport)
        headers = [f"{method} {path} HTTP/1.1", "Host: gw", f"Content-Length: {len(body)}"]
        if kind is not None:
            headers.append(f"X-Tunnel-Fallback: {kind}")
        if content_type:
            headers.append(f"Content-Type: {content_type}")
        if user is not None:
            headers.append(f"Authorization: Bearer {user}")
        if origin is not None:
            headers.append(f"Origin: {origin}")
        if session is not None:
            headers.append(f"X-Tunnel-Session: {session}")
        if ack is not None:
            headers.append(f"X-Tunnel-Ack: {ack}")
        if protocol is not None:
            headers.append(f"X-Tunnel-Protocol: {protocol}")
        head = "\r\n".join(headers) + "\r\n" + extra + "\r\n"
        channel.dataReceived(head.encode() + body)
        return transport, channel

    def call(self, *args: Any, **kwargs: Any) -> Response:
        transport, channel = self.request(*args, **kwargs)
        response = Response(transport.value())
        channel.connectionLost(Failure(ConnectionDone()))
        return response

    def open(self, path: str = "/echo", protocol: str = "echo", **kwargs: Any) -> str:
        response = self.call(path, "open", protocol=protocol, **kwargs)
        self.assertEqual(response.status, 200, response.body)
        session = response.json()["session"]
        self.assertEqual(response.headers["x-tunnel-session"], session)
        return str(session)

    def open_raw(self) -> tuple[str, Any, Any]:
        """A session of the raw service: its id, the backend protocol and wire."""
        transport, _ = self.request("/raw", "open", protocol="binary")
        backend, wire = self.endpoint.succeed()
        response = Response(transport.value())
        self.assertEqual(response.status, 200, response.body)
        return str(response.json()["session"]), backend, wire

    def send(self, session: str, *frames: bytes, path: str = "/echo", **kwargs: Any) -> Response:
        return self.call(path, "send", b"".join(frames), session, **kwargs)

    def poll(self, session: str, ack: int = 0, path: str = "/echo", **kwargs: Any) -> Response:
        transport, channel = self.request(path, "poll", b"", session, ack=ack, **kwargs)
        self.reactor.advance(0)
        response = Response(transport.value())
        channel.connectionLost(Failure(ConnectionDone()))
        return response


class OpenTests(FallbackCase):
    def test_open_goes_through_the_pipeline_and_answers_the_session(self) -> None:
        response = self.call("/echo", "open", protocol="echo")
        self.assertEqual(response.status, 200)
        body = response.json()
        self.assertEqual(body["protocol"], "echo")
        self.assertEqual(body["max_body"], 64 * 1024)
        self.assertGreaterEqual(len(body["session"]), 32)
        self.assertEqual(response.headers["cache-control"], "no-store")
        self.assertEqual(response.headers["access-control-allow-origin"], ORIGIN)
        self.assertEqual(response.headers["access-control-allow-credentials"], "true")
        (tunnel,) = self.site.registry.tunnels
        self.assertEqual(tunnel.via, "fallback")
        self.assertEqual(tunnel.subject.user, "alice")
        self.assertEqual(len(self.site.fallback), 1)

    def test_the_refusals_of_the_upgrade_have_their_twins(self) -> None:
        cases: list[tuple[dict[str, Any], int]] = [
            ({"origin": "https://evil.example"}, 403),
            ({"origin": None}, 403),
            ({"user": None}, 401),
            ({"user": "revoked"}, 401),
            ({"user": "guest"}, 403),
            ({"protocol": "other"}, 400),
            ({"protocol": None}, 400),
        ]
        for change, status in cases:
            kwargs: dict[str, Any] = {"protocol": "echo", **change}
            response = self.call("/echo", "open", **kwargs)
            self.assertEqual(response.status, status, (change, response.body))
        self.assertEqual(len(self.site.registry.tunnels), 0)
        self.assertEqual(len(self.site.fallback), 0)
        self.assertEqual(self.site.limiter.total, 0)

    def test_a_service_without_fallback_refuses_posts_as_before(self) -> None:
        response = self.call("/plain", "open", protocol="echo")
        self.assertEqual(response.status, 405)

    def test_only_the_fallback_content_type(self) -> None:
        response = self.call("/echo", "open", protocol="echo", content_type="text/plain")
        self.assertEqual(response.status, 415)
        response = self.call("/echo", "other", protocol="echo")
        self.assertEqual(response.status, 400)

    def test_preflight_for_the_services_origins_only(self) -> None:
        extra = "Access-Control-Request-Method: POST\r\n"
        ok = self.call("/echo", None, method="OPTIONS", content_type="", user=None, extra=extra)
        self.assertEqual(ok.status, 204)
        self.assertEqual(ok.headers["access-control-allow-origin"], ORIGIN)
        self.assertIn("X-Tunnel-Session", ok.headers["access-control-allow-headers"])
        evil = self.call(
            "/echo",
            None,
            method="OPTIONS",
            content_type="",
            user=None,
            origin="https://evil.example",
            extra=extra,
        )
        self.assertEqual(evil.status, 403)
        self.assertNotIn("access-control-allow-origin", evil.headers)

    def test_the_session_cap(self) -> None:
        self.site.fallback.max_sessions = 1
        self.open()
        response = self.call("/echo", "open", protocol="echo")
        self.assertEqual(response.status, 503)


class SessionTests(FallbackCase):
    def test_messages_up_and_down_by_poll(self) -> None:
        session = self.open()
        sent = self.send(session, encode(TEXT, 1, b"hello"), encode(BINARY, 2, b"\x00\xff"))
        self.assertEqual(sent.status, 200)
        self.assertEqual(sent.headers["x-tunnel-ack"], "2")
        polled = self.poll(session)
        self.assertEqual(polled.frames(), [(TEXT, 1, b"hello"), (BINARY, 2, b"\x00\xff")])
        # not acknowledged: sent again; acknowledged: gone
        self.assertEqual(len(self.poll(session, ack=0).frames()), 2)
        transport, _ = self.request("/echo", "poll", b"", session, ack=2)
        self.assertEqual(transport.value(), b"")  # waiting
        self.reactor.advance(20)
        self.assertEqual(Response(transport.value()).frames(), [(HEARTBEAT, 0, b"")])

    def test_a_repeated_post_is_taken_once(self) -> None:
        session = self.open()
        self.send(session, encode(TEXT, 1, b"once"))
        again = self.send(session, encode(TEXT, 1, b"once"), encode(TEXT, 2, b"twice"))
        self.assertEqual(again.headers["x-tunnel-ack"], "2")
        self.assertEqual([f[2] for f in self.poll(session).frames()], [b"once", b"twice"])

    def test_a_stream_pads_beats_and_resumes_where_the_client_was(self) -> None:
        session = self.open()
        transport, channel = self.request("/echo", "stream", b"", session, ack=0)
        self.send(session, encode(TEXT, 1, b"one"), encode(TEXT, 2, b"two"))
        self.reactor.advance(10)
        first = Response(transport.value()).frames()
        self.assertEqual(first[0][:2], (PAD, 0))
        self.assertEqual(len(first[0][2]), 64)
        self.assertEqual(first[1:], [(TEXT, 1, b"one"), (TEXT, 2, b"two"), (HEARTBEAT, 0, b"")])
        # the stream is cut after the client read message 1: a new one resumes
        channel.connectionLost(Failure(ConnectionLost()))
        again, _ = self.request("/echo", "stream", b"", session, ack=1)
        self.assertEqual(Response(again.value()).frames()[1:], [(TEXT, 2, b"two")])

    def test_a_new_down_request_ends_the_old_one(self) -> None:
        session = self.open()
        old, _ = self.request("/echo", "stream", b"", session)
        self.request("/echo", "stream", b"", session)
        self.assertTrue(old.value().endswith(b"0\r\n\r\n"))

    def test_a_stream_ends_after_its_time(self) -> None:
        session = self.open()
        transport, _ = self.request("/echo", "stream", b"", session)
        self.reactor.advance(25)
        self.assertTrue(transport.value().endswith(b"0\r\n\r\n"))

    def test_the_client_closes(self) -> None:
        session = self.open()
        (tunnel,) = self.site.registry.tunnels
        self.send(session, encode(CLOSE, 1, struct.pack(">H", 1000) + b"bye"))
        self.assertEqual(tunnel.close_code, 1000)
        self.assertEqual(self.poll(session).frames(), [(CLOSE, 1, struct.pack(">H", 1000))])
        self.assertEqual(len(self.site.registry.tunnels), 0)
        self.call("/echo", "poll", b"", session, ack=1)
        self.assertEqual(len(self.site.fallback), 0)
        self.assertEqual(self.site.limiter.total, 0)

    def test_the_gateway_closes_and_the_client_answers(self) -> None:
        session = self.open()
        (tunnel,) = self.site.registry.tunnels
        tunnel.end(1008, "credentials revoked")
        frames = self.poll(session).frames()
        self.assertEqual(frames, [(CLOSE, 1, struct.pack(">H", 1008) + b"credentials revoked")])
        self.send(session, encode(CLOSE, 1, struct.pack(">H", 1008)), ack=1)
        self.assertEqual(len(self.site.registry.tunnels), 0)
        self.assertEqual(len(self.site.fallback), 0)
        self.assertEqual(self.poll(session).status, 404)

    def test_a_client_that_never_answers_the_close_is_dropped(self) -> None:
        session = self.open()
        (tunnel,) = self.site.registry.tunnels
        tunnel.end(1008, "credentials revoked")
        self.reactor.advance(10)
        self.assertEqual(len(self.site.fallback), 0)
        self.assertEqual(self.poll(session).status, 404)

    def test_an_idle_session_is_lost(self) -> None:
        session = self.open()
        (tunnel,) = self.site.registry.tunnels
        self.reactor.advance(29)
        self.poll(session)  # a request keeps it
        self.reactor.advance(29)
        self.assertEqual(len(self.site.fallback), 1)
        self.reactor.advance(21)  # the poll ended at 20 s; nothing since
        self.assertEqual(len(self.site.fallback), 0)
        self.assertEqual(tunnel.close_code, 1006)

    def test_oversize_and_malformed_messages_close_as_a_websocket_would(self) -> None:
        session = self.open()
        (tunnel,) = self.site.registry.tunnels
        response = self.send(session, encode(BINARY, 1, b"x" * 1001))
        self.assertEqual(response.status, 413)
        self.assertEqual(tunnel.close_code, 1009)
        session = self.open()
        tunnel = next(t for t in self.site.registry.tunnels if t.close_code is None)
        response = self.send(session, encode(TEXT, 1, b"\xff"))
        self.assertEqual(response.status, 400)
        self.assertEqual(tunnel.close_code, 1007)


class SessionSecurityTests(FallbackCase):
    def test_unknown_session_404(self) -> None:
        self.assertEqual(self.poll("nothing-here").status, 404)
        self.assertEqual(self.call("/echo", "poll", b"").status, 404)

    def test_another_origin_on_a_later_request_403(self) -> None:
        session = self.open()
        self.assertEqual(self.poll(session, origin="https://evil.example").status, 403)
        self.assertEqual(self.poll(session, origin=None).status, 403)

    def test_another_user_403_the_same_user_refreshes(self) -> None:
        session = self.open()
        self.assertEqual(self.send(session, user="mallory").status, 403)
        self.assertEqual(self.send(session, user=None).status, 401)
        self.assertEqual(self.send(session, user="revoked").status, 401)
        self.assertEqual(self.send(session, user="alice").status, 200)

    def test_a_session_of_another_service_404(self) -> None:
        session = self.open()
        self.assertEqual(self.poll(session, path="/raw").status, 404)

    def test_a_revoked_tunnel_ends_its_session(self) -> None:
        session = self.open()
        (tunnel,) = self.site.registry.tunnels
        tunnel.revoked(1008, "revoked")
        frames = self.poll(session).frames()
        self.assertEqual(frames[0][0], CLOSE)
        self.assertEqual(struct.unpack(">H", frames[0][2][:2])[0], 1008)


class RevocationAndExpiryTests(FallbackCase):
    def test_a_revoked_user_is_closed_then_refused(self) -> None:
        engine = self.site.pipeline.engine = LocalEngine(self.reactor, self.site.registry)
        alice, bob = self.open(), self.open(user="bob")
        engine.revoke(Revocation.new("user", "alice", 60, self.reactor.seconds()))
        frames = self.poll(alice).frames()
        self.assertEqual(frames, [(CLOSE, 1, struct.pack(">H", 1008) + b"revoked")])
        self.assertEqual(self.poll(bob, user="bob").status, 0)  # bob's session goes on: nothing to say yet
        refused = self.call("/echo", "open", protocol="echo")
        self.assertEqual((refused.status, refused.body), (403, b"revoked\n"))

    def test_expired_credentials_close_the_session_1008(self) -> None:
        session = self.open(user="brief")
        self.reactor.advance(19)
        self.assertEqual(self.send(session, user="brief").status, 200)
        self.reactor.advance(1)
        frames = self.poll(session, user="brief").frames()
        self.assertEqual(frames, [(CLOSE, 1, struct.pack(">H", 1008) + b"credentials expired")])


class FlowTests(FallbackCase):
    def test_a_slow_backend_holds_the_posts(self) -> None:
        session, backend, wire = self.open_raw()
        (tunnel,) = self.site.registry.tunnels
        wire.producer.pauseProducing()  # as a full TCP buffer would
        held, _ = self.request("/raw", "send", encode(BINARY, 1, b"x" * 100), session)
        self.assertEqual(held.value(), b"")
        self.assertEqual(wire.value(), b"x" * 100)
        wire.producer.resumeProducing()
        self.assertEqual(Response(held.value()).status, 200)

    def test_a_slow_client_pauses_the_backend(self) -> None:
        session, backend, wire = self.open_raw()
        backend.dataReceived(b"y" * 5000)  # over the high-water mark, unacknowledged
        self.assertEqual(wire.producerState, "paused")
        frames = self.poll(session, path="/raw").frames()
        self.assertEqual(frames, [(BINARY, 1, b"y" * 5000)])
        self.poll(session, ack=1, path="/raw")
        self.assertEqual(wire.producerState, "producing")

    def test_the_backend_closes_after_the_client_has_everything(self) -> None:
        session, backend, wire = self.open_raw()
        (tunnel,) = self.site.registry.tunnels
        backend.dataReceived(b"last words")
        backend.connectionLost(Failure(ConnectionDone()))
        frames = self.poll(session, path="/raw").frames()
        self.assertEqual(frames, [(BINARY, 1, b"last words")])  # no close yet: not acknowledged
        frames = self.poll(session, ack=1, path="/raw").frames()
        self.assertEqual(frames, [(CLOSE, 2, struct.pack(">H", 1000) + b"backend closed the connection")])
        self.assertEqual(tunnel.close_code, 1000)
