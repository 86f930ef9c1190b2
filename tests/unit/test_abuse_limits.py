"""
The abuse limits at their boundaries, in memory: handshakes per address
(a token bucket: the burst allowed, one more 429), tunnels per user (N
open, one more 429; places given back however the tunnel ends), and a
client's message rate (1008 beyond the burst) and byte rate (not read for
a while, nothing dropped).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from tunnelgw.admission.checks import check_websocket_upgrade
from tunnelgw.admission.pipeline import AdmissionPipeline
from tunnelgw.admission.request import AdmissionRequest
from tunnelgw.config.model import GatewayConfig, Limits, ServiceConfig
from tunnelgw.errors import Refusal
from tunnelgw.interfaces import IAuthenticator
from tunnelgw.limits import ConnectionLimiter, MemoryLimitStore
from tunnelgw.registry import adapter as adapter_factory
from tunnelgw.security import Subject
from tunnelgw.testing import FakeClientLeg, FakeEndpoint, HalfCloseStringTransport
from tunnelgw.tunnel.legs import BackendProtocol
from tunnelgw.tunnel.registry import TunnelRegistry
from tunnelgw.tunnel.relay import Tunnel

HEADERS = {
    "upgrade": ["websocket"],
    "connection": ["Upgrade"],
    "sec-websocket-version": ["13"],
    "sec-websocket-key": ["dGhlIHNhbXBsZSBub25jZQ=="],
    "host": ["gw"],
    "sec-websocket-protocol": ["binary"],
}


def service(**limits: Any) -> ServiceConfig:
    return ServiceConfig(
        name="svc",
        path="/svc",
        adapter="raw",
        upstream="tcp:127.0.0.1:5900",
        subprotocols=("binary",),
        allow_missing_origin=True,
        limits=Limits(**limits),
    )


@implementer(IAuthenticator)
class Users:
    """Everyone is the user their X-User header names (anonymous without)."""

    def authenticate(self, request: Any, service: Any) -> Subject:
        user = request.headers.get("x-user", [None])[0]
        if user is None:
            return Subject.of(method="anonymous")
        return Subject.of(user, method="test")


class PipelineLimitsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.endpoint = FakeEndpoint()
        self.limiter = ConnectionLimiter(10_000, 10_000)
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def pipeline(self, **gateway: Any) -> AdmissionPipeline:
        config = GatewayConfig(listen=("tcp:0",), services=(), **gateway)
        self.store = MemoryLimitStore(self.reactor)
        return AdmissionPipeline(self.reactor, Users(), self.endpoint, store=self.store, gateway=config)

    def request(self, host: str = "192.0.2.1", user: str | None = None) -> AdmissionRequest:
        headers = dict(HEADERS)
        if user is not None:
            headers["x-user"] = [user]
        return AdmissionRequest("c", host, "/svc", "GET", headers, self.limiter.acquire(host))

    def admit(self, pipeline: AdmissionPipeline, svc: ServiceConfig, request: AdmissionRequest) -> Any:
        d = pipeline.admit(request, svc, check_websocket_upgrade)
        if self.endpoint.pending:
            self.endpoint.succeed()
        return d

    def test_the_burst_of_handshakes_then_429_until_a_token_is_back(self) -> None:
        pipeline = self.pipeline(handshake_rate_per_address=2, handshake_burst_per_address=3)
        svc = service()
        for _ in range(3):
            self.successResultOf(self.admit(pipeline, svc, self.request()))
        refusal = self.failureResultOf(self.admit(pipeline, svc, self.request()), Refusal).value
        self.assertEqual((refusal.status, refusal.headers), (429, {"Retry-After": "1"}))
        self.successResultOf(self.admit(pipeline, svc, self.request(host="192.0.2.2")))  # another address
        self.reactor.advance(0.5)  # one token back (2 a second)
        self.successResultOf(self.admit(pipeline, svc, self.request()))
        self.failureResultOf(self.admit(pipeline, svc, self.request()), Refusal)

    def test_a_rate_of_zero_is_no_limit(self) -> None:
        pipeline = self.pipeline(handshake_rate_per_address=0, handshake_burst_per_address=1)
        for _ in range(10):
            self.successResultOf(self.admit(pipeline, service(), self.request()))

    def test_n_tunnels_per_user_then_429(self) -> None:
        pipeline = self.pipeline(max_tunnels_per_user=3)
        svc = service(max_tunnels_per_user=2)
        first = [
            self.successResultOf(self.admit(pipeline, svc, self.request(user="alice"))) for _ in range(2)
        ]
        refusal = self.failureResultOf(self.admit(pipeline, svc, self.request(user="alice")), Refusal).value
        self.assertEqual(refusal.status, 429)
        (cap,) = [e for e in self.events if e.get("event") == "tunnel_cap"]
        self.assertEqual((cap["principal"], cap["held"], cap["held_here"]), ("alice", 2, 2))
        # the gateway-wide cap counts every service
        other = ServiceConfig(**{**svc.__dict__, "name": "other"})
        self.successResultOf(self.admit(pipeline, other, self.request(user="alice")))
        self.failureResultOf(self.admit(pipeline, other, self.request(user="alice")), Refusal)
        # others are not concerned, nor anonymous subjects
        self.successResultOf(self.admit(pipeline, svc, self.request(user="bob")))
        for _ in range(5):
            self.successResultOf(self.admit(pipeline, svc, self.request()))
        # a place comes back when its admission is abandoned
        first[0].abandon()
        self.successResultOf(self.admit(pipeline, svc, self.request(user="alice")))

    def test_a_refused_backend_gives_the_place_back(self) -> None:
        pipeline = self.pipeline(max_tunnels_per_user=1)
        d = pipeline.admit(self.request(user="alice"), service(), check_websocket_upgrade)
        self.endpoint.fail(ConnectionRefusedError())
        self.assertEqual(self.failureResultOf(d, Refusal).value.status, 502)
        self.assertEqual(self.store.held("tunnels:alice"), 0)

    def test_a_closed_tunnel_gives_its_place_back(self) -> None:
        pipeline = self.pipeline(max_tunnels_per_user=1)
        admission = self.successResultOf(self.admit(pipeline, service(), self.request(user="alice")))
        from tunnelgw.websocket.server import start_tunnel

        client = FakeClientLeg()
        tunnel = start_tunnel(admission, client, self.reactor, TunnelRegistry(), None)
        self.assertEqual(self.store.held("tunnels:alice"), 1)
        tunnel.client_closed(False, 1006, "gone")
        assert admission.backend is not None
        admission.backend.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.store.held("tunnels:alice"), 0)


class ClientRateTests(SynchronousTestCase):
    def make(self, **limits: Any) -> tuple[Tunnel, FakeClientLeg, HalfCloseStringTransport]:
        self.clock = MemoryReactorClock()
        client = FakeClientLeg()
        backend = BackendProtocol()
        wire = HalfCloseStringTransport()
        backend.makeConnection(wire)
        svc = service(**limits)
        tunnel = Tunnel(
            reactor=self.clock,
            service=svc,
            subprotocol="binary",
            conn_id="c",
            peer="192.0.2.1",
            subject=Subject(),
            adapter_factory=adapter_factory("raw"),
            backend=backend,
            registry=TunnelRegistry(),
        )
        tunnel.start(client)
        return tunnel, client, wire

    def test_the_burst_of_messages_then_1008(self) -> None:
        tunnel, client, wire = self.make(max_messages_per_second=10, message_burst=5)
        for _ in range(5):
            tunnel.client_message(b"m", True)
        self.assertIsNone(client.closed)
        self.clock.advance(0.1)  # one message's worth back
        tunnel.client_message(b"m", True)
        self.assertIsNone(client.closed)
        tunnel.client_message(b"m", True)
        self.assertEqual(client.closed, (1008, "rate: too many messages"))
        self.assertEqual(wire.value(), b"m" * 6)  # what was within the rate reached the backend

    def test_bytes_over_their_rate_slow_the_client_and_lose_nothing(self) -> None:
        tunnel, client, wire = self.make(max_bytes_per_second=1000, byte_burst=2000)
        tunnel.client_message(b"x" * 2000, True)
        self.assertEqual(client.transport.producerState, "producing")
        tunnel.client_message(b"y" * 500, True)  # 500 over: half a second
        self.assertEqual(client.transport.producerState, "paused")
        self.assertEqual(wire.value(), b"x" * 2000 + b"y" * 500)  # nothing dropped
        self.clock.advance(0.49)
        self.assertEqual(client.transport.producerState, "paused")
        self.clock.advance(0.02)
        self.assertEqual(client.transport.producerState, "producing")
        self.assertIsNone(client.closed)

    def test_off_by_zero(self) -> None:
        tunnel, client, wire = self.make(max_messages_per_second=0, max_bytes_per_second=0)
        for _ in range(10_000):
            tunnel.client_message(b"m", True)
        self.assertIsNone(client.closed)
        self.assertEqual(client.transport.producerState, "producing")


class FakeEngine:
    """An engine sharing places: each hold waits for the test's answer."""

    def __init__(self) -> None:
        self.holds: list[tuple[tuple[tuple[str, int], ...], str, defer.Deferred[Any]]] = []
        self.released: list[str] = []

    def admitting(self) -> None:
        pass

    def revoking(self, subject: Any) -> None:
        return None

    def hold(self, wanted: tuple[tuple[str, int], ...], owner: str) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()
        self.holds.append((wanted, owner, d))
        return d


class Lease:
    def __init__(self, engine: FakeEngine, owner: str) -> None:
        self.engine, self.owner = engine, owner

    def release(self) -> None:
        self.engine.released.append(self.owner)


class SharedPlacesTests(PipelineLimitsTests):
    def shared(self) -> tuple[AdmissionPipeline, FakeEngine]:
        pipeline = self.pipeline(max_tunnels_per_user=3)
        engine = FakeEngine()
        pipeline.engine = engine
        return pipeline, engine

    def test_held_across_instances_too(self) -> None:
        pipeline, engine = self.shared()
        d = self.admit(pipeline, service(max_tunnels_per_user=2), self.request(user="alice"))
        self.assertNoResult(d)
        [(wanted, owner, held)] = engine.holds
        self.assertEqual(wanted, (("tunnels:alice", 3), ("tunnels:svc:alice", 2)))
        held.callback(Lease(engine, owner))
        self.endpoint.succeed()
        admission = self.successResultOf(d)
        assert admission.places is not None
        admission.places.release()
        self.assertEqual(engine.released, [owner])
        self.assertEqual(self.store.held("tunnels:alice"), 0)

    def test_a_cap_reached_elsewhere_is_429_and_gives_the_local_place_back(self) -> None:
        pipeline, engine = self.shared()
        d = pipeline.admit(self.request(user="alice"), service(), check_websocket_upgrade)
        engine.holds[0][2].callback(None)
        self.assertEqual(self.failureResultOf(d, Refusal).value.status, 429)
        self.assertEqual(self.store.held("tunnels:alice"), 0)
        self.assertFalse(self.endpoint.pending)  # no backend connected for nothing
        [cap] = [e for e in self.events if e.get("event") == "tunnel_cap"]
        self.assertTrue(cap["shared"])
