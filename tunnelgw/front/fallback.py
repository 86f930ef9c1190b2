"""
The fallback transport's HTTP side, on a service's own path: a session is
opened by a POST that goes through the whole admission pipeline, as an
upgrade does; its later requests name it by C{X-Tunnel-Session} (a header:
proxies log URLs) and are held to its Origin and its credentials.

  POST, X-Tunnel-Fallback: open     admission; 200 with the session id
  POST, X-Tunnel-Fallback: stream   the messages down, as a stream
  POST, X-Tunnel-Fallback: poll     the messages down, one poll
  POST, X-Tunnel-Fallback: send     the messages up (frames), in the body
  OPTIONS                           a CORS preflight: the service's origins only

Every request carries C{X-Tunnel-Fallback} and the fallback's content
type, neither of which a cross-site form can send: a page of another
origin cannot make one without a preflight, which it gets only if the
service allows its origin.  C{X-Tunnel-Ack} acknowledges the messages
down up to a number; the answer to a send carries the last message up
taken.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, cast

from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.web import server

from tunnelgw.admission.checks import check_origin
from tunnelgw.admission.request import Admission, AdmissionRequest
from tunnelgw.errors import Refusal
from tunnelgw.fallback.down import FALLBACK_TYPE, DownResponse
from tunnelgw.fallback.framing import FramingError
from tunnelgw.fallback.session import FallbackSession
from tunnelgw.front.channel import _new_conn_id
from tunnelgw.front.forward import FORWARDED
from tunnelgw.front.requests import _refuse, admission_request, answerable
from tunnelgw.front.sessions import FallbackSessions, binding_of
from tunnelgw.logs import Logger
from tunnelgw.security import Subject
from tunnelgw.websocket.server import start_tunnel

__all__ = ["FALLBACK_TYPE", "FallbackEndpoint"]

_REQUEST_HEADERS = (
    "Content-Type, Authorization, X-Tunnel-Fallback, X-Tunnel-Session, X-Tunnel-Protocol, X-Tunnel-Ack"
)
_EXPOSED_HEADERS = "X-Tunnel-Session, X-Tunnel-Ack, X-Tunnel-Sent"
_ACK = re.compile(r"[0-9]{1,18}")


class FallbackEndpoint:
    """
    The fallback transport of one service (L{tunnelgw.front.resources.ServiceResource}).
    """

    log = Logger()

    def __init__(self, site: Any, service: Any, policy: Any) -> None:
        self.site = site
        self.service = service
        self.policy = policy

    @property
    def _settings(self) -> Any:
        return self.site.config.fallback

    def render(self, request: server.Request) -> Any:
        request.setHeader("Cache-Control", "no-store")
        request.setHeader("X-Content-Type-Options", "nosniff")
        areq = dataclasses.replace(admission_request(request), transport="fallback")
        try:
            origin = self._cors(request, areq)
            if request.method == b"OPTIONS":
                self._preflight(request, areq, origin)
                return server.NOT_DONE_YET
            kind = areq.single("X-Tunnel-Fallback")
            if (areq.single("Content-Type") or "").split(";")[0].strip().lower() != FALLBACK_TYPE:
                raise Refusal(415, f"fallback requests are {FALLBACK_TYPE}")
            if kind == "open":
                self._open(request, areq)
                return server.NOT_DONE_YET
            if kind not in ("stream", "poll", "send"):
                raise Refusal(400, "X-Tunnel-Fallback must be open, stream, poll or send")
            self._in_session(request, areq, kind)
        except Refusal as refusal:
            self._refuse(request, areq, refusal)
        return server.NOT_DONE_YET

    # -- CORS ---------------------------------------------------------------

    def _cors(self, request: server.Request, areq: AdmissionRequest) -> str | None:
        """
        The CORS headers of a response to an allowed Origin (none for a
        request without one); an Origin the service does not allow gets
        nothing, and its request goes on to be refused by admission.
        """
        origin = areq.single("Origin")
        if origin is None or origin == "null":
            return None
        try:
            check_origin(areq, self.service)
        except Refusal:
            return None
        request.setHeader("Access-Control-Allow-Origin", origin)
        request.setHeader("Access-Control-Allow-Credentials", "true")
        request.setHeader("Access-Control-Expose-Headers", _EXPOSED_HEADERS)
        request.setHeader("Vary", "Origin")
        return origin

    def _preflight(self, request: server.Request, areq: AdmissionRequest, origin: str | None) -> None:
        if origin is None:
            raise Refusal(403, "a preflight from an origin this service does not allow")
        if areq.single("Access-Control-Request-Method") != "POST":
            raise Refusal(403, "fallback requests are POSTs")
        request.setHeader("Access-Control-Allow-Methods", "POST")
        request.setHeader("Access-Control-Allow-Headers", _REQUEST_HEADERS)
        request.setHeader("Access-Control-Max-Age", "600")
        request.setResponseCode(204)
        request.finish()

    # -- open ---------------------------------------------------------------

    def _open(self, request: server.Request, areq: AdmissionRequest) -> None:
        site = self.site
        sessions: FallbackSessions = site.fallback
        # the session is a connection of its own in the caps, for as long as it lives
        lease = site.limiter.acquire(areq.peer_host)
        areq = dataclasses.replace(areq, lease=lease, conn_id=_new_conn_id())
        began = site.clock.seconds()

        def check(areq: AdmissionRequest) -> None:
            if len(sessions) >= sessions.max_sessions:
                raise Refusal(503, "the gateway is at its fallback session limit", {"Retry-After": "5"})

        d = site.pipeline.admit(areq, self.service, check)
        request.notifyFinish().addErrback(lambda _: d.cancel())

        def admitted(admission: Admission) -> None:
            if not answerable(request):
                admission.abandon()
                lease.release()
                return
            session = FallbackSession(
                session_id=sessions.new_id(site.pipeline.engine),
                service=self.service,
                origin=admission.origin,
                binding=binding_of(areq),
                peer=request.getClientAddress(),
                lease=lease,
                clock=site.clock,
                idle_timeout=self._settings.idle_timeout,
                ended=sessions.forget,
                closing=sessions.closing,
            )
            session.principal = admission.subject.principal
            session.opened_by = self
            sessions.add(session)
            site.pipeline.log_decision(
                areq,
                self.service.name,
                admission.subprotocol,
                "accept",
                200,
                "fallback session open",
                admission.subject.principal,
                elapsed=site.clock.seconds() - began,
            )
            session.tunnel = start_tunnel(
                admission, session, site.clock, site.registry, self.policy, session.session_id, via="fallback"
            )
            self._answer(
                request,
                {
                    "session": session.session_id,
                    "protocol": admission.subprotocol,
                    "max_body": site.body_limit(self.service.path),
                    "heartbeat": self._settings.heartbeat,
                },
                {"X-Tunnel-Session": session.session_id},
            )

        def refused(f: Failure) -> None:
            lease.release()
            if f.check(defer.CancelledError):
                return
            f.trap(Refusal)
            if answerable(request):
                _refuse(request, cast(Refusal, f.value))

        def broke(f: Failure) -> None:
            # answered all the same: the client is not left waiting
            self.log.failure("fallback open of {conn_id} failed", f, conn_id=areq.conn_id)
            if answerable(request):
                _refuse(request, Refusal(500, "internal error"))

        d.addCallbacks(admitted, refused)
        d.addErrback(broke)

    # -- a session's requests -----------------------------------------------

    def _in_session(self, request: server.Request, areq: AdmissionRequest, kind: str) -> None:
        session_id = areq.single("X-Tunnel-Session") or ""
        session = self.site.fallback.get(session_id)
        if session is None and self._elsewhere(request, areq, session_id):
            return
        if session is None or session.service.path != self.service.path or session.over:
            raise Refusal(404, "no such fallback session")
        origin = check_origin(areq, self.service)
        if origin != session.origin:
            raise Refusal(403, "this session was opened from another origin")
        ack_header = areq.single("X-Tunnel-Ack") or "0"
        if _ACK.fullmatch(ack_header) is None:
            raise Refusal(400, "X-Tunnel-Ack must be a message number")
        ack = int(ack_header)
        binding = binding_of(areq)
        if binding == session.binding:
            self._serve(request, areq, session, kind, ack)
            return
        if session.closing:
            # what it still holds goes to its credentials only; a session
            # a reload closed may have no realm to log others in with
            raise Refusal(403, "this session is closing: its credentials cannot change")
        # other credentials: they must log the same user in again (and
        # then refresh the tunnel's, as the refresh endpoint does)
        d = defer.maybeDeferred(self.site.authenticator.authenticate, areq, self.service)

        def logged_in(subject: Subject) -> None:
            tunnel = session.tunnel
            if tunnel is None or session.over:
                subject.logout()
                raise Refusal(404, "no such fallback session")
            if subject.user != tunnel.subject.user:
                subject.logout()
                raise Refusal(403, "this session belongs to another user")
            tunnel.refresh(subject)
            session.binding = binding
            self._serve(request, areq, session, kind, ack)

        def refused(f: Failure) -> None:
            if not f.check(Refusal):
                # answered all the same: the client is not left waiting
                self.log.failure("fallback request of {conn_id} failed", f, conn_id=areq.conn_id)
                f = Failure(Refusal(500, "internal error"))
            self._refuse(request, areq, cast(Refusal, f.value), session)

        d.addCallback(logged_in).addErrback(refused)
        d.addErrback(
            lambda f: self.log.failure("fallback request of {conn_id} failed", f, conn_id=areq.conn_id)
        )

    def _elsewhere(self, request: server.Request, areq: AdmissionRequest, session_id: str) -> bool:
        """
        A session of another instance of the cluster: the request is passed
        to it (L{tunnelgw.front.forward}), or refused 404 if none is known.
        """
        engine = self.site.pipeline.engine
        tag, dot, _ = session_id.partition(".")
        if not dot or engine is None or tag == engine.fallback_tag or areq.single(FORWARDED) is not None:
            return False
        body = b""
        if request.content is not None:
            request.content.seek(0)
            body = request.content.read()

        def owner(url: str | None) -> None:
            if url is None:
                self._refuse(request, areq, Refusal(404, "no such fallback session"))
            elif answerable(request):
                cluster = self.site.config.cluster
                authority_file = cluster.advertise_ca if cluster is not None else None
                self.site.fallback.forwarder(self.site.clock, authority_file).forward(request, url, body)

        engine.fallback_owner(tag).addCallback(owner).addErrback(
            lambda f: self._refuse(request, areq, Refusal(503, "the shared engine is not reachable"))
        )
        return True

    def _serve(
        self, request: server.Request, areq: AdmissionRequest, session: FallbackSession, kind: str, ack: int
    ) -> None:
        session.touch()
        session.acknowledge(ack)
        if session.over:  # the client acknowledged the end
            self._answer(request, {"closed": True}, {"X-Tunnel-Ack": str(session.inbox.last)})
            return
        if kind == "send":
            self._send(request, areq, session)
            return
        settings = self._settings
        down = DownResponse(
            request,
            session,
            self.site.clock,
            poll=kind == "poll",
            lifetime=settings.poll_time if kind == "poll" else settings.stream_time,
            heartbeat=settings.heartbeat,
            padding=settings.padding,
            max_bytes=settings.stream_bytes,
        )
        session.attach_down(down, ack)

    def _send(self, request: server.Request, areq: AdmissionRequest, session: FallbackSession) -> None:
        body = request.content.read() if request.content is not None else b""

        def answer() -> None:
            if answerable(request):
                request.setHeader("X-Tunnel-Ack", str(session.inbox.last))
                # how far down it has gone: a client whose stream lags behind polls
                request.setHeader("X-Tunnel-Sent", str(session.outbox.last))
                request.setHeader("Content-Length", "0")
                request.finish()

        try:
            session.receive(body, answer)
        except FramingError as e:
            status = 413 if e.code == 1009 else 400
            self._refuse(request, areq, Refusal(status, str(e)), session)

    # -- answers ------------------------------------------------------------

    def _answer(self, request: server.Request, body: dict[str, Any], headers: dict[str, str]) -> None:
        data = json.dumps(body).encode("utf-8") + b"\n"
        for name, value in headers.items():
            request.setHeader(name, value)
        request.setHeader("Content-Type", "application/json")
        request.setHeader("Content-Length", str(len(data)))
        request.write(data)
        request.finish()

    def _refuse(
        self,
        request: server.Request,
        areq: AdmissionRequest,
        refusal: Refusal,
        session: FallbackSession | None = None,
    ) -> None:
        self.log.info(
            "fallback {status} for {conn_id} from {peer}: {reason}",
            event="fallback_refused",
            conn_id=areq.conn_id,
            peer=areq.peer_host,
            service=self.service.name,
            tunnel=getattr(session.tunnel, "conn_id", None) if session is not None else None,
            principal=session.principal if session is not None else None,
            status=refusal.status,
            reason=refusal.reason,
        )
        if answerable(request):
            _refuse(request, refusal)
