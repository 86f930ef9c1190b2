"""
Where inner gateways dial in (L{LinkResource}), and the admission of the
sessions an outer gateway opens over a reverse link (L{admit_link}).
"""

from __future__ import annotations

from typing import Any, cast

from autobahn.twisted.resource import WebSocketResource
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.resource import Resource

from tunnelgw.admission.checks import check_limits, check_websocket_upgrade
from tunnelgw.admission.request import Admission, AdmissionRequest
from tunnelgw.errors import Refusal
from tunnelgw.front.channel import GatewayChannel, _new_conn_id, _peer_certificate
from tunnelgw.front.requests import _refuse, admission_request
from tunnelgw.limits import Lease
from tunnelgw.logs import Logger
from tunnelgw.upstream.links import LINK_SUBPROTOCOL, link_factory
from tunnelgw.websocket.server import start_tunnel

__all__ = ["LinkResource", "admit_link"]


class LinkResource(Resource):
    """
    Where an inner gateway dials in (C{[links.NAME] path}): only over TLS
    with the inner's client certificate (its subject as configured), only
    for the link subprotocol.  The open link waits in its pool.
    """

    isLeaf = True
    log = Logger()

    def __init__(self, site: Any, pool: Any) -> None:
        super().__init__()
        self._site = site
        self._pool = pool
        self._factory = link_factory(pool, site.clock)

    def render(self, request: server.Request) -> Any:
        areq = admission_request(request)
        name = f"links.{self._pool.config.name}"
        try:
            check_limits(areq)
            check_websocket_upgrade(areq)
            certificate = areq.peer_certificate
            subject = certificate.subject.rfc4514_string() if certificate is not None else None
            if subject != self._pool.config.certificate_subject:
                raise Refusal(403, "not a gateway this one accepts links from")
            if LINK_SUBPROTOCOL not in areq.subprotocols:
                raise Refusal(400, f"a link must offer the {LINK_SUBPROTOCOL} subprotocol")
        except Refusal as refusal:
            self._site.pipeline.log_decision(areq, name, None, "refuse", refusal.status, refusal.reason)
            _refuse(request, refusal)
            return server.NOT_DONE_YET
        self._site.pipeline.log_decision(areq, name, LINK_SUBPROTOCOL, "accept", 101, "reverse link", subject)
        lease = cast(GatewayChannel, request.channel).take_lease()
        return WebSocketResource(_Leased(self._factory, lease)).render(request)


class _Leased:
    """
    Builds a link protocol that keeps its connection's lease (released when
    the link is lost).
    """

    def __init__(self, factory: Any, lease: Lease | None) -> None:
        self._factory = factory
        self._lease = lease

    def buildProtocol(self, addr: Any) -> Any:
        protocol = self._factory.buildProtocol(addr)
        protocol.lease = self._lease
        return protocol


def admit_link(site: Any, link: Any, request: dict[str, Any]) -> None:
    """
    An outer gateway asked, over a reverse link, to open a session: admit
    it through this gateway's pipeline as if it were an upgrade, then make
    the link the tunnel's client leg.
    """
    path = request.get("open")
    service = site.config.service_at(path) if isinstance(path, str) else None
    if service is None:
        link.refuse(404, f"no service at {path!r}")
        link.close(1000, "session refused")
        return
    peer = link.transport.getPeer()
    host = getattr(peer, "host", "unknown")
    lease = site.limiter.acquire(host)
    headers: dict[str, list[str]] = {}
    for key, header in (
        ("origin", "origin"),
        ("subprotocol", "sec-websocket-protocol"),
        ("assertion", "tunnelgw-assertion"),
    ):
        value = request.get(key)
        if isinstance(value, str) and value:
            headers[header] = [value]
    areq = AdmissionRequest(
        conn_id=_new_conn_id(),
        peer_host=host,
        path=service.path,
        method="GET",
        headers=headers,
        lease=lease,
        secure=True,
        # the link's peer: the outer gateway, by its (verified) certificate
        peer_certificate=_peer_certificate(link.transport),
    )
    d = site.pipeline.admit(areq, service, lambda r: None)

    def admitted(admission: Admission) -> None:
        site.pipeline.log_decision(
            areq,
            service.name,
            admission.subprotocol,
            "accept",
            101,
            "reverse link session",
            admission.subject.principal,
        )
        link.lease = lease
        link.accept(admission.subprotocol)
        link.tunnel = start_tunnel(
            admission, link, site.clock, site.registry, site.config.policy(service.policy), ""
        )

    def refused(f: Failure) -> None:
        lease.release()
        if not f.check(Refusal):
            return
        refusal = cast(Refusal, f.value)
        link.refuse(refusal.status, refusal.reason)
        link.close(1000, "session refused")

    d.addCallbacks(admitted, refused)
