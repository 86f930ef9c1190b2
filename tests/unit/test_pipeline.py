"""
The admission pipeline in memory: each step's refusal, the order of the
steps, and the upstream connection before acceptance.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectingCancelledError, ConnectionRefusedError, TimeoutError
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from tunnelgw.admission.checks import check_websocket_upgrade, choose_subprotocol
from tunnelgw.admission.pipeline import AdmissionPipeline
from tunnelgw.admission.request import Admission, AdmissionRequest
from tunnelgw.config.model import ServiceConfig
from tunnelgw.errors import Refusal
from tunnelgw.interfaces import IAuthenticator, IAuthorizationPolicy, ISessionPolicy
from tunnelgw.limits import ConnectionLimiter
from tunnelgw.logs import Logger
from tunnelgw.security import PassThroughAuthenticator, Subject
from tunnelgw.testing import FakeEndpoint
from tunnelgw.tunnel.legs import BackendProtocol

ORIGIN = "https://app.example.com"
UPGRADE = {
    "upgrade": ["websocket"],
    "connection": ["keep-alive, Upgrade"],
    "sec-websocket-version": ["13"],
    "sec-websocket-key": ["dGhlIHNhbXBsZSBub25jZQ=="],
    "host": ["gw.example.com:8443"],
}


def service(**overrides: object) -> ServiceConfig:
    values: dict[str, object] = dict(
        name="svc",
        path="/svc",
        adapter="raw",
        upstream="tcp:127.0.0.1:5900",
        subprotocols=("binary",),
        origins=frozenset({ORIGIN}),
    )
    values.update(overrides)
    return ServiceConfig(**values)  # type: ignore[arg-type]


class FakeTunnel:
    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.events: list[str] = []

    def backend_data(self, data: bytes) -> None:
        self.data.append(data)
        self.events.append("data")

    def backend_eof(self) -> None:
        self.events.append("eof")

    def backend_lost(self, reason: object) -> None:
        self.events.append("lost")


class PipelineTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.endpoint = FakeEndpoint()
        self.limiter = ConnectionLimiter(max_connections=100, max_per_address=100)
        self.pipeline = AdmissionPipeline(self.reactor, PassThroughAuthenticator(), self.endpoint)

    def request(self, host: str = "192.0.2.1", **headers: list[str]) -> AdmissionRequest:
        merged = dict(UPGRADE)
        merged.setdefault("origin", [ORIGIN])
        merged.setdefault("sec-websocket-protocol", ["binary"])
        merged.update({k.replace("_", "-"): v for k, v in headers.items()})
        merged = {k: v for k, v in merged.items() if v}
        return AdmissionRequest(
            conn_id="c1",
            peer_host=host,
            path="/svc",
            method="GET",
            headers=merged,
            lease=self.limiter.acquire(host),
        )

    def refusal(self, request: AdmissionRequest, svc: ServiceConfig | None = None) -> Refusal:
        d = self.pipeline.admit(request, svc or service(), check_websocket_upgrade)
        return self.failureResultOf(d, Refusal).value  # type: ignore[return-value]

    def test_admitted_after_backend_connects(self) -> None:
        d = self.pipeline.admit(self.request(), service(), check_websocket_upgrade)
        self.assertNoResult(d)
        self.assertEqual(self.endpoint.descriptions, [("tcp:127.0.0.1:5900", 10.0)])
        protocol, transport = self.endpoint.succeed()
        admission = self.successResultOf(d)
        self.assertIsInstance(admission, Admission)
        self.assertEqual(admission.subprotocol, "binary")
        self.assertIs(admission.backend, protocol)
        self.assertIsInstance(protocol, BackendProtocol)
        # read from the start; what the service says first waits (one read,
        # then no more reading) until the tunnel attaches
        self.assertEqual(transport.producerState, "producing")
        protocol.dataReceived(b"RFB 003.008\n")
        self.assertEqual(transport.producerState, "paused")
        tunnel = FakeTunnel()
        protocol.attach(tunnel)  # type: ignore[arg-type]
        self.assertEqual(tunnel.data, [b"RFB 003.008\n"])

    def test_what_the_service_said_first_comes_before_its_end(self) -> None:
        self.pipeline.admit(self.request(), service(), check_websocket_upgrade)
        protocol, _ = self.endpoint.succeed()
        protocol.dataReceived(b"hello")
        protocol.readConnectionLost()
        tunnel = FakeTunnel()
        protocol.attach(tunnel)  # type: ignore[arg-type]
        self.assertEqual(tunnel.events, ["data", "eof"])

    def test_echo_needs_no_backend(self) -> None:
        admission = self.successResultOf(
            self.pipeline.admit(
                self.request(), service(adapter="echo", upstream=None), check_websocket_upgrade
            )
        )
        self.assertIsNone(admission.backend)
        self.assertEqual(self.endpoint.pending, [])

    def test_global_cap_503_first(self) -> None:
        self.limiter.max_connections = 0
        refusal = self.refusal(self.request(origin=["https://evil.example"]))
        self.assertEqual(refusal.status, 503)
        self.assertIn("Retry-After", refusal.headers)

    def test_per_address_cap_429(self) -> None:
        self.limiter.max_per_address = 2
        self.request()
        self.request()
        self.assertEqual(self.refusal(self.request()).status, 429)
        self.assertEqual(self.refusal(self.request()).status, 429)
        # another address is unaffected
        self.endpoint_result = self.pipeline.admit(
            self.request("192.0.2.99"), service(), check_websocket_upgrade
        )
        self.assertNoResult(self.endpoint_result)

    def test_not_get_405(self) -> None:
        request = self.request()
        request.method = "POST"
        self.assertEqual(self.refusal(request).status, 405)

    def test_not_http_1_1_505(self) -> None:
        request = self.request()
        request.http_version = "HTTP/1.0"
        self.assertEqual(self.refusal(request).status, 505)

    def with_host(self, values: list[str]) -> AdmissionRequest:
        request = self.request()
        request.headers = {**request.headers, "host": values}
        return request

    def test_host_missing_repeated_or_with_a_bad_port_400(self) -> None:
        for host in ([], ["a.example", "b.example"], ["gw.example.com:https"], ["[::1]:x"]):
            self.assertEqual(self.refusal(self.with_host(host)).status, 400, host)
        for host in (["gw.example.com"], ["[::1]"], ["[::1]:8443"], ["192.0.2.1:80"]):
            d = self.pipeline.admit(self.with_host(host), service(), check_websocket_upgrade)
            self.assertNoResult(d)  # on to the backend

    def test_duplicates_autobahn_would_refuse_400(self) -> None:
        self.assertEqual(self.refusal(self.request(sec_websocket_protocol=["binary, binary"])).status, 400)
        two = self.request(sec_websocket_extensions=["permessage-deflate", "x-webkit-deflate-frame"])
        self.assertEqual(self.refusal(two).status, 400)

    def test_not_an_upgrade_426(self) -> None:
        refusal = self.refusal(self.request(upgrade=[]))
        self.assertEqual(refusal.status, 426)
        self.assertEqual(refusal.headers["Upgrade"], "websocket")

    def test_wrong_version_426(self) -> None:
        refusal = self.refusal(self.request(sec_websocket_version=["8"]))
        self.assertEqual((refusal.status, refusal.headers["Sec-WebSocket-Version"]), (426, "13"))

    def test_bad_key_400(self) -> None:
        self.assertEqual(self.refusal(self.request(sec_websocket_key=["short"])).status, 400)
        self.assertEqual(self.refusal(self.request(sec_websocket_key=[])).status, 400)

    def test_bad_origin_403(self) -> None:
        self.assertEqual(self.refusal(self.request(origin=["https://evil.example"])).status, 403)
        self.assertEqual(self.refusal(self.request(origin=["null"])).status, 403)
        self.assertEqual(self.refusal(self.request(origin=["not a url"])).status, 403)

    def test_origin_normalized(self) -> None:
        d = self.pipeline.admit(
            self.request(origin=["HTTPS://APP.example.com:443"]), service(), check_websocket_upgrade
        )
        self.assertNoResult(d)  # waiting for the backend: admitted so far

    def test_two_origins_400(self) -> None:
        self.assertEqual(self.refusal(self.request(origin=[ORIGIN, ORIGIN])).status, 400)

    def test_missing_origin(self) -> None:
        self.assertEqual(self.refusal(self.request(origin=[])).status, 403)
        d = self.pipeline.admit(
            self.request(origin=[]), service(allow_missing_origin=True), check_websocket_upgrade
        )
        self.assertNoResult(d)

    def test_subprotocol_refusals_400(self) -> None:
        refusal = self.refusal(self.request(sec_websocket_protocol=["mqtt"]))
        self.assertEqual(refusal.status, 400)
        self.assertIn("mqtt", refusal.reason)
        self.assertEqual(self.refusal(self.request(sec_websocket_protocol=[])).status, 400)

    def test_backend_refused_502(self) -> None:
        d = self.pipeline.admit(self.request(), service(), check_websocket_upgrade)
        self.endpoint.fail(ConnectionRefusedError("nope"))
        self.assertEqual(self.failureResultOf(d, Refusal).value.status, 502)

    def test_backend_timeout_504(self) -> None:
        """
        A TCP endpoint times out by itself (connect timeout given to it).
        """
        d = self.pipeline.admit(self.request(), service(), check_websocket_upgrade)
        self.endpoint.fail(TimeoutError("connect timed out"))
        self.assertEqual(self.failureResultOf(d, Refusal).value.status, 504)

    def test_backend_timeout_504_for_other_endpoints(self) -> None:
        """
        Endpoints that do not time out by themselves get our timer.
        """
        d = self.pipeline.admit(
            self.request(), service(upstream="unix:path=/run/x.sock"), check_websocket_upgrade
        )
        self.reactor.advance(9.9)
        self.assertNoResult(d)
        self.reactor.advance(0.2)
        self.assertEqual(self.failureResultOf(d, Refusal).value.status, 504)

    def test_client_gone_cancels_backend_connect(self) -> None:
        d = self.pipeline.admit(self.request(), service(), check_websocket_upgrade)
        ((connecting, _),) = self.endpoint.pending
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.assertTrue(connecting.called)  # the connect itself was cancelled

    def twisted_like_endpoint(self) -> FakeEndpoint:
        """Connects whose cancel fails them as Twisted's endpoints do."""
        endpoint = self.endpoint

        def connect(factory: Any) -> defer.Deferred[Any]:
            d: defer.Deferred[Any] = defer.Deferred(
                lambda d: d.errback(ConnectingCancelledError(IPv4Address("TCP", "127.0.0.1", 9)))
            )
            endpoint.pending.append((d, factory))
            return d

        endpoint.connect = connect  # type: ignore[method-assign]
        return endpoint

    def test_client_gone_during_a_connect_is_an_abandon_not_a_timeout(self) -> None:
        self.twisted_like_endpoint()
        events: list[dict[str, Any]] = []
        self.patch(AdmissionPipeline, "log", Logger(observer=events.append))
        d = self.pipeline.admit(self.request(), service(), check_websocket_upgrade)
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.assertEqual(
            [(e["decision"], e["status"]) for e in events if e.get("event") == "admission"],
            [("abandon", 499)],
        )

    def test_a_timeout_is_504_whatever_the_endpoint_says_of_its_cancel(self) -> None:
        self.twisted_like_endpoint()
        d = self.pipeline.admit(
            self.request(), service(upstream="unix:path=/run/x.sock"), check_websocket_upgrade
        )
        self.reactor.advance(10.1)
        self.assertEqual(self.failureResultOf(d, Refusal).value.status, 504)

    def test_client_gone_cancels_a_pending_login(self) -> None:
        login: defer.Deferred[Subject] = defer.Deferred()

        @implementer(IAuthenticator)
        class Slow:
            def authenticate(self, request: object, service: object) -> defer.Deferred[Subject]:
                return login

        pipeline = AdmissionPipeline(self.reactor, Slow(), self.endpoint)
        d = pipeline.admit(self.request(), service(), check_websocket_upgrade)
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.assertTrue(login.called)  # cancelled, so never reaching the backend
        self.assertEqual(self.endpoint.pending, [])

    def logged_in_pipeline(self) -> tuple[AdmissionPipeline, list[str]]:
        """
        A pipeline whose logins record their logout.
        """
        from tunnelgw.security.jaas import LoginSession

        logouts: list[str] = []

        class Module:
            def logout(self) -> None:
                logouts.append("out")

        @implementer(IAuthenticator)
        class LoggingIn:
            def authenticate(self, request: object, service: object) -> defer.Deferred[Subject]:
                subject = Subject.of("alice")
                subject.session = LoginSession("r", [Module()])  # type: ignore[list-item]
                return defer.succeed(subject)

        return AdmissionPipeline(self.reactor, LoggingIn(), self.endpoint), logouts

    def test_login_ended_when_the_backend_is_not_reached(self) -> None:
        pipeline, logouts = self.logged_in_pipeline()
        d = pipeline.admit(self.request(), service(), check_websocket_upgrade)
        self.endpoint.fail(ConnectionRefusedError("nope"))
        self.failureResultOf(d, Refusal)
        self.assertEqual(logouts, ["out"])

    def test_login_ended_when_the_client_goes_away(self) -> None:
        pipeline, logouts = self.logged_in_pipeline()
        gone = pipeline.admit(self.request(), service(), check_websocket_upgrade)
        gone.cancel()
        self.failureResultOf(gone, defer.CancelledError)
        self.assertEqual(logouts, ["out"])
        self.endpoint.pending.clear()
        d = pipeline.admit(self.request(), service(), check_websocket_upgrade)
        self.endpoint.succeed()
        admission = self.successResultOf(d)
        self.assertEqual(logouts, ["out"])  # admitted: the tunnel will end it
        admission.abandon()  # ...unless the client goes before the tunnel starts
        self.assertEqual(logouts, ["out", "out"])

    def test_authenticator_refusal_passes_through(self) -> None:
        @implementer(IAuthenticator)
        class Deny:
            def authenticate(self, request: object, service: object) -> defer.Deferred[Subject]:
                return defer.fail(Refusal(401, "who are you", {"WWW-Authenticate": 'Basic realm="x"'}))

        pipeline = AdmissionPipeline(self.reactor, Deny(), self.endpoint)
        d = pipeline.admit(self.request(), service(), check_websocket_upgrade)
        refusal = self.failureResultOf(d, Refusal).value
        self.assertEqual(refusal.status, 401)  # type: ignore[attr-defined]
        self.assertEqual(self.endpoint.pending, [])  # never reached the backend

    def test_an_authenticator_may_answer_without_a_deferred(self) -> None:
        @implementer(IAuthenticator)
        class AtOnce:
            def authenticate(self, request: object, service: object) -> Subject:
                return Subject.of("alice")

        pipeline = AdmissionPipeline(self.reactor, AtOnce(), self.endpoint)
        d = pipeline.admit(self.request(), service(), check_websocket_upgrade)
        self.assertNoResult(d)  # on to the backend
        self.endpoint.succeed()
        self.assertEqual(self.successResultOf(d).subject.user, "alice")

    def test_an_authenticator_may_refuse_by_raising(self) -> None:
        @implementer(IAuthenticator)
        class No:
            def authenticate(self, request: object, service: object) -> Subject:
                raise Refusal(403, "not you")

        pipeline = AdmissionPipeline(self.reactor, No(), self.endpoint)
        d = pipeline.admit(self.request(), service(), check_websocket_upgrade)
        self.assertEqual(self.failureResultOf(d, Refusal).value.status, 403)  # type: ignore[attr-defined]
        self.assertEqual(self.endpoint.pending, [])

    def test_unexpected_error_is_500_and_logged(self) -> None:
        @implementer(IAuthenticator)
        class Broken:
            def authenticate(self, request: object, service: object) -> defer.Deferred[Subject]:
                raise ZeroDivisionError()

        pipeline = AdmissionPipeline(self.reactor, Broken(), self.endpoint)
        refusal = self.failureResultOf(
            pipeline.admit(self.request(), service(), check_websocket_upgrade), Refusal
        )
        self.assertEqual(refusal.value.status, 500)  # type: ignore[attr-defined]
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_unexpected_error_after_the_login_ends_it(self) -> None:
        pipeline, logouts = self.logged_in_pipeline()

        def broken(reactor: object, description: str, timeout: float) -> object:
            raise ZeroDivisionError()

        pipeline._endpoint_for = broken  # type: ignore[assignment]
        refusal = self.failureResultOf(
            pipeline.admit(self.request(), service(), check_websocket_upgrade), Refusal
        )
        self.assertEqual(refusal.value.status, 500)  # type: ignore[attr-defined]
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(logouts, ["out"])


tokens = st.text(alphabet="abcdefghijklmnop.", min_size=1, max_size=6)


@given(
    offered=st.lists(tokens, unique=True, max_size=5),
    ours=st.lists(tokens, unique=True, min_size=1, max_size=5),
)
def test_choose_subprotocol_prefers_our_order(offered: list[str], ours: list[str]) -> None:
    svc = service(subprotocols=tuple(ours))
    common = [name for name in ours if name in offered]
    if common:
        assert choose_subprotocol(offered, svc) == common[0]
    else:
        try:
            choose_subprotocol(offered, svc)
        except Refusal as e:
            assert e.status == 400
        else:
            raise AssertionError("accepted without a common subprotocol")


def _decodes_to_16_bytes(key: str) -> bool:
    import base64
    import binascii

    try:
        return len(base64.b64decode(key.encode("ascii"), validate=True)) == 16
    except (binascii.Error, UnicodeEncodeError):
        return False


_BASE64ISH = st.text(
    alphabet=st.sampled_from("ABCXYZabcxyz0189+/=-_ \t.é"), min_size=18, max_size=26
) | st.builds(lambda raw: __import__("base64").b64encode(raw).decode(), st.binary(min_size=14, max_size=18))


@given(key=_BASE64ISH)
@example(key="dGhlIHNhbXBsZSBub25jZQ==")
@example(key="dGhlIHNhbXBsZSBub25jZQ")  # unpadded
@example(key="dGhlIHNhbXBsZSBub25jZQ=")  # half padded
@example(key="dGhlIHNhbXBsZSBub25jZQ===")
@example(key="dGhlIHNhbXBsZSBub25jZQab")  # 18 bytes
@example(key="dGhlIHNhbXBsZSBub25jZ===")  # 15 bytes and a bit
@example(key="dGhlIHNhbXBsZSBub25jZQ-_")  # the URL-safe alphabet
@example(key="dGhlIHNhbXBs ZSBub25jZQ==")
@example(key="dGhlIHNhbXBsZSBub25jZé==")
def test_a_key_is_accepted_exactly_when_it_is_16_bytes_in_base64(key: str) -> None:
    """
    RFC 6455 4.1: Sec-WebSocket-Key is 16 bytes, base64-encoded; the check
    accepts what base64.b64decode(key, validate=True) decodes to 16 bytes.
    """
    limiter = ConnectionLimiter(max_connections=10, max_per_address=10)
    request = AdmissionRequest(
        conn_id="c1",
        peer_host="192.0.2.1",
        path="/svc",
        method="GET",
        headers={**UPGRADE, "sec-websocket-key": [key]},
        lease=limiter.acquire("192.0.2.1"),
    )
    try:
        check_websocket_upgrade(request)
        accepted = True
    except Refusal as refusal:
        assert (refusal.status, refusal.reason) == (400, "Sec-WebSocket-Key is not 16 bytes in base64")
        accepted = False
    assert accepted == _decodes_to_16_bytes(key.strip())


@implementer(IAuthorizationPolicy, ISessionPolicy)
class DecidingPolicy:
    """A session policy whose decisions the test gives."""

    def __init__(self) -> None:
        self.asked: list[tuple[str | None, str, str | None]] = []
        self.decisions: list[defer.Deferred[Any]] = []

    def permits(self, subject: Any, service: str, action: str, resource: str) -> bool:
        return False  # the service's own answer: nothing, without a session's

    def start_session(self, subject: Any, service: Any, subprotocol: str | None, reactor: Any) -> Any:
        self.asked.append((subject.user, service.name, subprotocol))
        d: defer.Deferred[Any] = defer.Deferred()
        self.decisions.append(d)
        return d


class SessionPolicyTests(SynchronousTestCase):
    """
    A policy that decides per session (ISessionPolicy) is asked after the
    login and before the backend; its answer is the tunnel's policy.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.endpoint = FakeEndpoint()
        self.policy = DecidingPolicy()
        gateway = SimpleNamespace(policy=lambda name: self.policy if name == "remote" else None)
        self.pipeline = AdmissionPipeline(
            self.reactor,
            PassThroughAuthenticator(),
            self.endpoint,
            gateway=gateway,  # type: ignore[arg-type]
        )
        self.svc = service(policy="remote")

    def request(self) -> AdmissionRequest:
        limiter = ConnectionLimiter(max_connections=10, max_per_address=10)
        self.limiter = limiter
        return PipelineTests.request(self)  # type: ignore[arg-type]

    def test_the_decision_comes_before_the_backend_and_is_the_tunnels_policy(self) -> None:
        d = self.pipeline.admit(self.request(), self.svc, check_websocket_upgrade)
        self.assertEqual(len(self.policy.asked), 1)
        self.assertEqual(self.policy.asked[0][1:], ("svc", "binary"))
        self.assertEqual(self.endpoint.pending, [])  # not before the decision
        decided = object()
        self.policy.decisions[0].callback(decided)
        self.endpoint.succeed()
        self.assertIs(self.successResultOf(d).policy, decided)

    def test_a_refusal_of_the_policy_is_the_answer(self) -> None:
        d = self.pipeline.admit(self.request(), self.svc, check_websocket_upgrade)
        self.policy.decisions[0].errback(Refusal(403, "not for you"))
        self.assertEqual(self.failureResultOf(d, Refusal).value.status, 403)  # type: ignore[attr-defined]
        self.assertEqual(self.endpoint.pending, [])

    def test_no_decision_in_time_is_a_503(self) -> None:
        d = self.pipeline.admit(self.request(), self.svc, check_websocket_upgrade)
        self.reactor.advance(self.svc.limits.connect_timeout + 0.1)
        refusal = self.failureResultOf(d, Refusal).value
        self.assertEqual(refusal.status, 503)  # type: ignore[attr-defined]
        self.assertEqual(self.endpoint.pending, [])

    def test_a_failing_decision_point_is_a_503(self) -> None:
        d = self.pipeline.admit(self.request(), self.svc, check_websocket_upgrade)
        self.policy.decisions[0].errback(ConnectionRefusedError())
        self.assertEqual(self.failureResultOf(d, Refusal).value.status, 503)  # type: ignore[attr-defined]

    def test_a_policy_that_decides_per_operation_only_is_not_asked(self) -> None:
        d = self.pipeline.admit(self.request(), service(policy="other"), check_websocket_upgrade)
        self.endpoint.succeed()
        self.assertIsNone(self.successResultOf(d).policy)
        self.assertEqual(self.policy.asked, [])
