"""
Revocations: whom they name, how long; the local engine ending tunnels
and refusing admissions; the admin API that issues them.
"""

from __future__ import annotations

import io
import json
from typing import Any

from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from tests.unit.test_reload import open_stomp_tunnel
from tunnelgw.cluster.revocations import Revocation, Revocations
from tunnelgw.config.loader import loads
from tunnelgw.errors import Refusal
from tunnelgw.front.admin import AdminResource
from tunnelgw.security import Subject
from tunnelgw.service import GatewayService
from tunnelgw.testing import AdapterHarness, public_realm


class RevocationTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.revocations = Revocations(self.clock, limit=3)

    def test_whom_each_kind_names(self) -> None:
        alice = Subject.of("alice", ["ops"], jti="t-1")
        for kind, value, session, named in (
            ("user", "alice", "", True),
            ("user", "bob", "", False),
            ("role", "ops", "", True),
            ("jti", "t-1", "", True),
            ("session", "s-9", "s-9", True),
            ("session", "s-9", "s-8", False),
        ):
            revocation = Revocation.new(kind, value, 60, self.clock.seconds())
            self.assertEqual(revocation.matches(alice, session), named, (kind, value))
            revocations = Revocations(self.clock)
            revocations.add(revocation)
            self.assertEqual(revocations.revoking(alice, session) is not None, named)

    def test_for_a_while(self) -> None:
        self.revocations.add(Revocation.new("user", "alice", 60, self.clock.seconds()))
        self.clock.advance(59)
        self.assertIsNotNone(self.revocations.revoking(Subject.of("alice")))
        self.clock.advance(1)
        self.assertIsNone(self.revocations.revoking(Subject.of("alice")))
        self.assertEqual(self.revocations.active(), [])

    def test_a_longer_one_replaces_a_shorter_one_not_the_other_way(self) -> None:
        now = self.clock.seconds()
        self.assertTrue(self.revocations.add(Revocation.new("user", "alice", 60, now)))
        self.assertTrue(self.revocations.add(Revocation.new("user", "alice", 120, now)))
        self.assertFalse(self.revocations.add(Revocation.new("user", "alice", 30, now)))
        [active] = self.revocations.active()
        self.assertEqual(active.until, now + 120)

    def test_bounded(self) -> None:
        now = self.clock.seconds()
        for user in ("a", "b", "c"):
            self.revocations.add(Revocation.new("user", user, 60, now))
        with self.assertRaises(ValueError):
            self.revocations.add(Revocation.new("user", "d", 60, now))

    def test_what_is_not_a_revocation(self) -> None:
        for kind, value, seconds in (
            ("group", "x", 60),
            ("user", "", 60),
            ("user", "x" * 300, 60),
            ("user", "x", 0),
        ):
            with self.assertRaises(ValueError):
                Revocation.new(kind, value, seconds, 0)
        bad: list[Any] = [
            {},
            [],
            {"kind": "user", "value": "x", "until": "soon"},
            {"kind": "user", "value": "x"},
        ]
        for data in bad:
            with self.assertRaises(ValueError):
                Revocation.from_json(data)
        revocation = Revocation.new("role", "ops", 60, 0, "why", "admin")
        self.assertEqual(Revocation.from_json(json.loads(json.dumps(revocation.to_json()))), revocation)


ADMIN = f"""
[gateway]
listen = ["tcp:8080:interface=127.0.0.1"]
{public_realm("staff")}
[realms.admins]
[[realms.admins.modules]]
module = "address"
flag = "requisite"
options = {{ allow = ["127.0.0.0/8"] }}
[[realms.admins.modules]]
module = "anonymous"
flag = "required"
options = {{ user = "root", roles = ["admin"] }}
[policies.p]
[[policies.p.rules]]
roles = ["*"]
actions = ["connect", "send"]
resources = ["*"]
[services.broker]
path = "/stomp"
adapter = "stomp"
upstream = "tcp:127.0.0.1:61613"
realm = "staff"
policy = "p"
subprotocols = ["v12.stomp"]
allow_missing_origin = true
[admin]
listen = "tcp:9465:interface=127.0.0.1"
realm = "admins"
"""


class LocalEngineTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.reactor.advance(1000)
        self.service = GatewayService(loads(ADMIN), self.reactor)

    def open_tunnel(self, user: str) -> AdapterHarness:
        return open_stomp_tunnel(self.service, user=user)

    def test_a_revocation_ends_the_users_tunnels_in_their_protocols_words(self) -> None:
        alice, bob = self.open_tunnel("alice"), self.open_tunnel("bob")
        revocation = Revocation.new("user", "alice", 3600, self.reactor.seconds())
        self.successResultOf(self.service.engine.revoke(revocation))
        self.assertEqual(alice.client.closed, (1008, "revoked"))
        self.assertTrue(alice.client.messages[0][0].startswith(b"ERROR\n"))
        self.assertIsNone(bob.client.closed)
        self.assertIs(self.service.site.pipeline.engine.revoking(Subject.of("alice")), revocation)

    def test_an_admission_of_a_revoked_user_is_refused(self) -> None:
        self.service.engine.revoke(Revocation.new("role", "ops", 60, self.reactor.seconds()))
        pipeline = self.service.site.pipeline
        with self.assertRaises(Refusal) as e:
            pipeline._check_revoked(Subject.of("carol", ["ops"]), SimpleRequest())  # type: ignore[arg-type]
        self.assertEqual((e.exception.status, e.exception.reason), (403, "revoked"))

    def test_a_reload_keeps_the_engine_and_its_revocations(self) -> None:
        engine = self.service.engine
        engine.revoke(Revocation.new("user", "alice", 60, self.reactor.seconds()))
        self.service.reload(loads(ADMIN))
        self.assertIs(self.service.engine, engine)
        self.assertIs(self.service.site.pipeline.engine, engine)


class SimpleRequest:
    conn_id = "c1"
    transport = "websocket"


class AdminAPITests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.reactor.advance(1000)
        self.service = GatewayService(loads(ADMIN), self.reactor)
        self.resource = AdminResource(self.service)

    def request(
        self,
        method: bytes,
        path: bytes,
        body: Any = None,
        headers: dict[str, str] | None = None,
        peer: str = "127.0.0.1",
    ) -> tuple[int, Any, DummyRequest]:
        from twisted.internet.address import IPv4Address

        request = DummyRequest(path.split(b"/")[1:])
        request.method = method
        request.path = path
        request.client = IPv4Address("TCP", peer, 40000)
        request.isSecure = lambda: False  # type: ignore[method-assign]
        for name, value in (headers or {}).items():
            request.requestHeaders.setRawHeaders(name, [value])
        request.content = io.BytesIO(json.dumps(body).encode() if body is not None else b"")
        self.resource.render(request)
        self.assertTrue(request.finished)
        written = b"".join(request.written)
        kind = request.responseHeaders.getRawHeaders("Content-Type", [""])[0]
        assert request.responseCode is not None
        return request.responseCode, json.loads(written) if kind == "application/json" else written, request

    def test_the_tunnel_list(self) -> None:
        open_stomp_tunnel(self.service)
        status, body, request = self.request(b"GET", b"/api/tunnels")
        self.assertEqual(status, 200)
        [row] = body["tunnels"]
        self.assertEqual((row["user"], row["service"], row["subprotocol"]), ("alice", "broker", "v12.stomp"))
        self.assertEqual(request.responseHeaders.getRawHeaders("Cache-Control"), ["no-store"])

    def test_a_revocation_by_post(self) -> None:
        harness = open_stomp_tunnel(self.service)
        status, body, _ = self.request(
            b"POST",
            b"/api/revocations",
            {"kind": "user", "value": "alice", "seconds": 60, "reason": "left"},
            {"Content-Type": "application/json"},
        )
        self.assertEqual(status, 201)
        self.assertEqual((body["revocation"]["value"], body["revocation"]["by"]), ("alice", "root"))
        self.assertEqual(harness.client.closed, (1008, "revoked"))
        status, body, _ = self.request(b"GET", b"/api/revocations")
        self.assertEqual([r["value"] for r in body["revocations"]], ["alice"])

    def test_cross_site_requests_are_refused(self) -> None:
        revocation = {"kind": "user", "value": "alice", "seconds": 60}
        # a form post cannot be application/json
        status, _, _ = self.request(b"POST", b"/api/revocations", revocation, {"Content-Type": "text/plain"})
        self.assertEqual(status, 415)
        # another page's Origin
        status, _, _ = self.request(
            b"POST",
            b"/api/revocations",
            revocation,
            {"Content-Type": "application/json", "Origin": "https://evil.example", "Host": "127.0.0.1:9465"},
        )
        self.assertEqual(status, 403)
        self.assertEqual(self.service.engine.revocations.active(), [])

    def test_the_realm_decides(self) -> None:
        status, body, _ = self.request(b"GET", b"/api/tunnels", peer="192.0.2.1")
        self.assertEqual(status, 401)

    def test_bad_revocations(self) -> None:
        for bad in ({"kind": "group", "value": "x", "seconds": 1}, {"kind": "user", "value": "x"}, [1]):
            status, _, _ = self.request(
                b"POST", b"/api/revocations", bad, {"Content-Type": "application/json"}
            )
            self.assertEqual(status, 400, bad)

    def test_the_page_and_its_policy(self) -> None:
        status, body, request = self.request(b"GET", b"/")
        self.assertEqual(status, 200)
        self.assertIn(b'<script src="/admin.js" defer></script>', body)
        self.assertNotIn(b"<script>", body)
        [csp] = request.responseHeaders.getRawHeaders("Content-Security-Policy") or [""]
        self.assertIn("script-src 'self'", csp)
        self.assertIn("frame-ancestors 'none'", csp)
        status, body, _ = self.request(b"GET", b"/admin.js")
        self.assertIn(b"textContent", body)
        self.assertEqual(self.request(b"GET", b"/nothing")[0], 404)
        self.assertEqual(self.request(b"DELETE", b"/api/tunnels")[0], 405)
