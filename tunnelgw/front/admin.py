"""
The admin listener (C{[admin]}): a JSON API and a page, for subjects of
the admin realm holding one of its roles.

  GET  /api/tunnels        the open tunnels, cluster-wide
  GET  /api/revocations    the revocations in force, as this instance knows them
  POST /api/revocations    put one in force: C{{"kind": "user", "value": "alice",
                           "seconds": 3600, "reason": "..."}} → 201
  GET  /                   the page (admin.html, admin.js, admin.css)

Every request is authenticated by the realm (401 with its challenge, 403
without the role).  Against cross-site requests: a POST must be
C{application/json} (a form cannot send it, and no CORS answer ever allows
another origin), and a request whose C{Origin} is not this listener's own
is refused.  Answers are C{no-store}, C{nosniff}, and framed by nothing
(C{frame-ancestors 'none'}); the page runs no inline script
(C{script-src 'self'}).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.resource import Resource

from tunnelgw.admission.request import AdmissionRequest
from tunnelgw.cluster.revocations import Revocation
from tunnelgw.config.model import ServiceConfig
from tunnelgw.config.values import normalize_origin
from tunnelgw.errors import Refusal
from tunnelgw.front.channel import _headers_of, _new_conn_id
from tunnelgw.limits import ConnectionLimiter
from tunnelgw.logs import Logger

__all__ = ["AdminRequest", "AdminResource", "admin_site"]

MAX_BODY = 16 * 1024
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self';"
    " frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
STATIC = {
    b"/": ("admin.html", "text/html; charset=utf-8"),
    b"/admin.js": ("admin.js", "text/javascript; charset=utf-8"),
    b"/admin.css": ("admin.css", "text/css; charset=utf-8"),
}
# The admin listener's requests are not a gateway connection's; their
# AdmissionRequest still needs a lease, from a limiter of its own.
_LIMITER = ConnectionLimiter(1 << 30, 1 << 30)


def _static(name: str) -> bytes:
    return resources.files("tunnelgw.front").joinpath("admin_page", name).read_bytes()


class AdminResource(Resource):
    """
    The admin listener's root.  C{state}: the L{tunnelgw.service.GatewayService},
    read at each request (a reload replaces its realm, its engine).
    """

    isLeaf = True
    log = Logger()

    def __init__(self, state: Any) -> None:
        super().__init__()
        self._state = state

    def render(self, request: server.Request) -> Any:
        for name, value in (
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            ("Content-Security-Policy", CSP),
            ("Referrer-Policy", "no-referrer"),
            ("Server", "tunnelgw"),
        ):
            request.setHeader(name, value)
        d = defer.maybeDeferred(self._checked, request)
        d.addCallbacks(self._answer, self._refused, callbackArgs=(request,), errbackArgs=(request,))
        return server.NOT_DONE_YET

    def _checked(self, request: server.Request) -> Any:
        admin = self._state.config.admin
        if admin is None:
            raise Refusal(404, "no admin API")
        origin = request.getHeader("Origin")
        if origin is not None:
            host = request.getHeader("Host") or ""
            scheme = "https" if request.isSecure() else "http"
            try:
                same = normalize_origin(origin) == normalize_origin(f"{scheme}://{host}")
            except ValueError:
                same = False
            if not same:
                raise Refusal(403, "cross-origin requests are refused")
        peer = request.getClientAddress()
        host = getattr(peer, "host", "unix")
        areq = AdmissionRequest(
            conn_id=_new_conn_id(),
            peer_host=host,
            path=request.path.decode("latin-1"),
            method=request.method.decode("latin-1"),
            headers=_headers_of(request),
            lease=_LIMITER.acquire(host),
            secure=request.isSecure(),
        )
        areq.lease.release()
        service = ServiceConfig(
            name="admin", path="/api", adapter="admin", realm=admin.realm, require_roles=admin.require_roles
        )
        subject = self._state.site.authenticator.authenticate(areq, service)
        return defer.maybeDeferred(lambda: subject).addCallback(self._route, request)

    def _route(self, subject: Any, request: server.Request) -> Any:
        subject.logout()  # nothing lives on after the request
        path, method = request.path, request.method
        if path in STATIC and method in (b"GET", b"HEAD"):
            name, kind = STATIC[path]
            return 200, kind, _static(name)
        if path == b"/favicon.ico" and method in (b"GET", b"HEAD"):
            return 204, "image/x-icon", b""  # browsers ask for one
        if path == b"/api/tunnels" and method == b"GET":
            return self._state.engine.tunnels().addCallback(lambda rows: (200, {"tunnels": rows}))
        if path == b"/api/revocations" and method == b"GET":
            active = [r.to_json() for r in self._state.engine.revocations.active()]
            return 200, {"revocations": active}
        if path == b"/api/revocations" and method == b"POST":
            return self._revoke(subject, request)
        if path in STATIC or path.startswith(b"/api/"):
            raise Refusal(405, "method not allowed")
        raise Refusal(404, "not found")

    def _revoke(self, subject: Any, request: server.Request) -> Any:
        kind = (request.getHeader("Content-Type") or "").split(";")[0].strip().lower()
        if kind != "application/json":
            raise Refusal(415, "a revocation is sent as application/json")
        body = request.content.read(MAX_BODY + 1) if request.content is not None else b""
        if len(body) > MAX_BODY:
            raise Refusal(413, "too large")
        try:
            data = json.loads(body)
            if not isinstance(data, dict):
                raise ValueError("a JSON object")
            revocation = Revocation.new(
                str(data.get("kind", "")),
                str(data.get("value", "")),
                data.get("seconds"),  # type: ignore[arg-type]
                self._state.reactor.seconds(),
                str(data.get("reason", "")),
                subject.principal,
            )
        except (ValueError, TypeError) as e:
            raise Refusal(400, f"not a revocation: {e}") from None
        self.log.info(
            "{by} revokes {kind} {value} for {seconds}s: {reason}",
            event="revocation_issued",
            by=subject.principal,
            kind=revocation.kind,
            value=revocation.value,
            seconds=data.get("seconds"),
            revocation=revocation.id,
            reason=revocation.reason,
        )
        return self._state.engine.revoke(revocation).addCallback(lambda r: (201, {"revocation": r.to_json()}))

    def _answer(self, answer: tuple[Any, ...], request: server.Request) -> None:
        if len(answer) == 3:
            status, kind, body = answer
        else:
            status, document = answer
            kind, body = "application/json", json.dumps(document).encode() + b"\n"
        request.setResponseCode(status)
        request.setHeader("Content-Type", kind)
        if request.method != b"HEAD":
            request.write(body)
        request.finish()

    def _refused(self, f: Failure, request: server.Request) -> None:
        if f.check(Refusal):
            refusal: Refusal = f.value  # type: ignore[assignment]
        else:
            self.log.failure("admin request failed", f, event="admin_error")
            refusal = Refusal(500, "internal error")
        request.setResponseCode(refusal.status)
        for name, value in refusal.headers.items():
            request.setHeader(name, value)
        request.setHeader("Content-Type", "application/json")
        request.write(json.dumps({"error": refusal.reason}).encode() + b"\n")
        request.finish()


class AdminRequest(server.Request):
    """A request whose body, as it arrives, is refused past L{MAX_BODY} (413, closed)."""

    _body_size = 0

    def handleContentChunk(self, data: bytes) -> None:
        self._body_size += len(data)
        if self._body_size > MAX_BODY:
            transport: Any = self.channel.transport if self.channel is not None else None
            if transport is not None and not transport.disconnecting:
                transport.write(
                    b"HTTP/1.1 413 Content Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
                )
                transport.loseConnection()
            return
        super().handleContentChunk(data)


def admin_site(state: Any, reactor: Any) -> server.Site:
    """The admin listener's site (idle connections closed after a minute)."""
    site = server.Site(AdminResource(state), timeout=60, reactor=reactor)
    site.requestFactory = AdminRequest
    site.noisy = False
    site.displayTracebacks = False
    return site
