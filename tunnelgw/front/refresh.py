"""
The credential refresh endpoint: a client proves its credentials again
for a tunnel's session id, and the tunnel lives on.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, cast

from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.resource import Resource

from tunnelgw.admission.checks import check_origin
from tunnelgw.admission.request import AdmissionRequest
from tunnelgw.errors import Refusal
from tunnelgw.front.requests import _refuse, admission_request, answerable
from tunnelgw.logs import Logger
from tunnelgw.security import Subject

__all__ = ["RefreshResource"]


class RefreshResource(Resource):
    """
    C{POST} with C{X-Tunnel-Session} (from the upgrade response) and fresh
    credentials: the realm of the tunnel's service logs the client in
    again; if it is the same user, still allowed, the tunnel's expiry and
    login session are replaced (200).  Otherwise nothing changes: 401 (bad
    credentials, with the challenge), 403 (another user, a missing role, or
    a foreign Origin), 404 (no such tunnel).
    """

    isLeaf = True
    log = Logger()

    def __init__(self, site: Any) -> None:
        super().__init__()
        self._site = site

    def render(self, request: server.Request) -> Any:
        if request.method != b"POST":
            _refuse(request, Refusal(405, "refresh with POST", {"Allow": "POST"}))
            return server.NOT_DONE_YET
        return self.render_POST(request)

    def render_POST(self, request: server.Request) -> Any:
        areq = dataclasses.replace(admission_request(request), transport="refresh")
        tunnel = self._site.registry.by_session.get(areq.single("X-Tunnel-Session") or "")
        if tunnel is None:
            self._refused(request, areq, None, Refusal(404, "no such tunnel session"))
            return server.NOT_DONE_YET
        try:
            check_origin(areq, tunnel.service)
        except Refusal as refusal:
            self._refused(request, areq, tunnel, refusal)
            return server.NOT_DONE_YET
        assert self._site.authenticator is not None
        d = defer.maybeDeferred(self._site.authenticator.authenticate, areq, tunnel.service)

        def logged_in(subject: Subject) -> None:
            if subject.user != tunnel.subject.user:
                subject.logout()
                raise Refusal(403, "these credentials are for another user")
            tunnel.refresh(subject)
            body = json.dumps({"expires": subject.expires}).encode("ascii") + b"\n"
            request.setHeader("Content-Type", "application/json")
            request.setHeader("Cache-Control", "no-store")
            request.setHeader("Content-Length", str(len(body)))
            self._decision(areq, tunnel, "accept", 200, "refreshed", subject.principal)
            request.write(body)
            request.finish()

        def refused(f: Failure) -> None:
            f.trap(Refusal)
            self._refused(request, areq, tunnel, cast(Refusal, f.value))

        d.addCallback(logged_in).addErrback(refused)
        d.addErrback(lambda f: self.log.failure("refresh of {conn_id} failed", f, conn_id=areq.conn_id))
        return server.NOT_DONE_YET

    def _decision(
        self,
        areq: AdmissionRequest,
        tunnel: Any,
        decision: str,
        status: int,
        reason: str,
        principal: str | None,
    ) -> None:
        self.log.info(
            "refresh {decision} {conn_id} from {peer}: {status} {reason}",
            event="refresh",
            decision=decision,
            conn_id=areq.conn_id,
            peer=areq.peer_host,
            tunnel=tunnel.conn_id if tunnel is not None else None,
            principal=principal,
            status=status,
            reason=reason,
        )

    def _refused(
        self, request: server.Request, areq: AdmissionRequest, tunnel: Any, refusal: Refusal
    ) -> None:
        self._decision(areq, tunnel, "refuse", refusal.status, refusal.reason, None)
        if answerable(request):
            _refuse(request, refusal)
