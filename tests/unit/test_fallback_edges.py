"""
Fallback sessions at their edges.  One a reload closes: the client gets
the close frame and code a WebSocket client would, though the new
configuration has no fallback (or no service) at the session's path any
more, or no longer allows its origin.  A session's login that fails
unexpectedly is answered all the same, and so is an open that breaks.
A session's audit events say it is a fallback.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from twisted.logger import globalLogPublisher

from tests.unit.test_fallback import CONFIG, ORIGIN, BearerUsers, FallbackCase
from tunnelgw.admission.pipeline import AdmissionPipeline
from tunnelgw.config.loader import loads
from tunnelgw.fallback.framing import CLOSE, TEXT, encode

REMOVED = "configuration changed: service removed"
ECHO = CONFIG[CONFIG.index("[services.echo]") : CONFIG.index("[services.raw]")]
WITHOUT_ECHO = CONFIG.replace(ECHO, "")
WITHDRAWN = CONFIG.replace(ECHO, ECHO.replace("fallback = true\n", ""))
OTHER_ORIGIN = CONFIG.replace(ECHO, ECHO.replace(ORIGIN, "https://other.example"))


class ClosedByReloadTests(FallbackCase):
    def reload(self, text: str) -> None:
        """The site serves C{text} from now on (what a reload does to it)."""
        pipeline = AdmissionPipeline(self.reactor, BearerUsers(), self.endpoint)
        self.site.configure(loads(text), pipeline, BearerUsers())

    def closed_by_reload(self, text: str, code: int, reason: str) -> str:
        session = self.open()
        (tunnel,) = self.site.registry.tunnels
        self.reload(text)
        tunnel.end(code, reason)  # the reload's verdict on it
        return session

    def preflight(self, origin: str = ORIGIN) -> int:
        extra = "Access-Control-Request-Method: POST\r\n"
        answer = self.call(
            "/echo", None, method="OPTIONS", content_type="", user=None, origin=origin, extra=extra
        )
        return answer.status

    def assert_closes_cleanly(self, session: str, code: int, reason: str, after: int = 404) -> None:
        self.assertEqual(self.preflight(), 204)  # its client's requests may ask first
        self.assertNotEqual(self.preflight("https://evil.example"), 204)
        close = (CLOSE, 1, struct.pack(">H", code) + reason.encode())
        self.assertEqual(self.poll(session).frames(), [close])
        answer = self.send(session, encode(CLOSE, 1, struct.pack(">H", code)), ack=1)
        self.assertEqual(answer.status, 200)
        self.assertEqual(len(self.site.fallback), 0)
        self.assertIsNone(self.site.fallback.closing_at("/echo", ORIGIN))  # forgotten there too
        self.assertEqual(self.site.registry.tunnels, set())
        self.assertEqual(self.poll(session).status, after)  # over: the configuration of the moment answers
        self.assertNotEqual(self.preflight(), 204)

    def test_its_service_removed(self) -> None:
        session = self.closed_by_reload(WITHOUT_ECHO, 1001, REMOVED)
        self.assert_closes_cleanly(session, 1001, REMOVED)

    def test_its_fallback_withdrawn(self) -> None:
        reason = "configuration changed: service changed"
        session = self.closed_by_reload(WITHDRAWN, 1001, reason)
        self.assertIsNone(self.site.upgrades[b"/echo"].fallback)  # the path is a WebSocket's only
        self.assert_closes_cleanly(session, 1001, reason, after=405)

    def test_its_origin_no_longer_allowed(self) -> None:
        reason = "configuration changed: origin not allowed"
        session = self.closed_by_reload(OTHER_ORIGIN, 1008, reason)
        self.assert_closes_cleanly(session, 1008, reason)

    def test_a_message_sent_while_it_closes_is_answered(self) -> None:
        session = self.closed_by_reload(WITHOUT_ECHO, 1001, REMOVED)
        self.assertEqual(self.send(session, encode(TEXT, 1, b"late")).status, 200)

    def test_only_closing_sessions_at_their_own_path(self) -> None:
        """
        A session the gateway has not closed follows the configuration of
        the moment; a closing one is served at its own path only.
        """
        session = self.open()
        self.reload(WITHOUT_ECHO)
        self.assertEqual(self.poll(session).status, 404)  # still open: the new configuration answers
        (tunnel,) = self.site.registry.tunnels
        tunnel.end(1001, REMOVED)
        self.assertEqual(self.poll(session, path="/raw").status, 404)
        self.assertEqual(self.poll(session).frames()[0][0], CLOSE)

    def test_a_closing_session_takes_its_own_credentials_only(self) -> None:
        """
        Others are not logged in again for it: what it still holds is its
        user's, and its realm may be gone with the reload.
        """
        session = self.closed_by_reload(WITHOUT_ECHO, 1001, REMOVED)
        self.assertEqual(self.poll(session, user="bob").status, 403)
        # alice again, with other credentials (a cookie too): not logged in
        refused = self.poll(session, extra="Cookie: tg=refreshed\r\n")
        self.assertEqual(
            (refused.status, refused.body), (403, b"this session is closing: its credentials cannot change\n")
        )
        self.assertEqual(self.poll(session).frames()[0][0], CLOSE)


def recording(case: FallbackCase) -> Callable[[str], list[Any]]:
    """The log events from now on, asked for by name (while C{case} runs)."""
    events: list[Any] = []
    globalLogPublisher.addObserver(events.append)
    case.addCleanup(globalLogPublisher.removeObserver, events.append)
    return lambda name: [e for e in events if e.get("event") == name]


class Faulty(BearerUsers):
    """C{Bearer boom} breaks the login: an error no module meant."""

    def authenticate(self, request: Any, service: Any) -> Any:
        if request.headers.get("authorization") == ["Bearer boom"]:
            raise RuntimeError("a bug")
        return super().authenticate(request, service)


class UnexpectedErrorTests(FallbackCase):
    def test_a_login_that_breaks_is_answered_500(self) -> None:
        logged = recording(self)
        self.site.authenticator = Faulty()
        session = self.open()
        answer = self.poll(session, user="boom")
        self.assertEqual((answer.status, answer.body), (500, b"internal error\n"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        [refused] = logged("fallback_refused")
        self.assertEqual((refused["status"], refused["principal"]), (500, "alice"))

    def test_an_open_that_breaks_is_answered_500(self) -> None:
        from tunnelgw.front import fallback

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("a bug")

        self.patch(fallback, "start_tunnel", broken)
        answer = self.call("/echo", "open", protocol="echo")
        self.assertEqual((answer.status, answer.body), (500, b"internal error\n"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.reactor.advance(30)  # the session it left is lost, its lease given back
        self.assertEqual(len(self.site.fallback), 0)
        self.assertEqual(self.site.limiter.total, 0)


class AuditTests(FallbackCase):
    def test_a_sessions_events_say_it_is_a_fallback(self) -> None:
        from tunnelgw.cluster.engine import LocalEngine
        from tunnelgw.cluster.revocations import Revocation

        logged = recording(self)
        engine = self.site.pipeline.engine = LocalEngine(self.reactor, self.site.registry)
        self.open()
        engine.revoke(Revocation.new("user", "alice", 60, self.reactor.seconds()))
        self.call("/echo", "open", protocol="echo")  # refused: revoked
        [revoked] = logged("tunnel_revoked")
        [denied] = logged("authorization")
        self.assertEqual((revoked["transport"], denied["transport"]), ("fallback", "fallback"))
