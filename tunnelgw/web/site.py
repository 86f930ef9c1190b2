"""
The HTTP front: a twisted.web C{Site} whose resources are the services
(WebSocket upgrades through the admission pipeline) and the health
endpoint.

Why twisted.web and not autobahn's factory on the port: one listener then
serves upgrades, plain HTTP answers with bodies and headers (refusals,
health, later the fallback transport and credential refresh), and the
admission pipeline runs on a parsed request before autobahn is involved.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any, cast

from autobahn.twisted.resource import WebSocketResource
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime, ISSLTransport
from twisted.python.failure import Failure
from twisted.web import http, server
from twisted.web.resource import Resource

from tunnelgw.admission.checks import check_limits, check_origin, check_websocket_upgrade
from tunnelgw.admission.pipeline import AdmissionPipeline
from tunnelgw.admission.request import Admission, AdmissionRequest
from tunnelgw.config.model import GatewayConfig, ServiceConfig
from tunnelgw.errors import Refusal
from tunnelgw.limits import ConnectionLimiter, Lease
from tunnelgw.logs import Logger
from tunnelgw.security import Subject
from tunnelgw.tunnel.deadlines import Deadline, deadlines
from tunnelgw.tunnel.registry import TunnelRegistry
from tunnelgw.upstream.links import LINK_SUBPROTOCOL, link_factory
from tunnelgw.web.strict_head import StrictHead
from tunnelgw.web.upgrade import parse_upgrade_head, refusal_parts, refusal_response, status_phrase, take_over
from tunnelgw.web.websocket import AdmittedFactory, make_factory, start_tunnel

__all__ = ["GatewayChannel", "GatewaySite", "ServiceResource"]


def _new_conn_id() -> str:
    """
    A connection's id in the logs: 12 hex digits.  Not a secret (it is
    never sent to a client, nor used as a key), so it comes from Python's
    random generator (reseeded in every forked child) rather than the
    kernel's, which costs a system call per connection.
    """
    return f"{random.getrandbits(48):012x}"


class GatewayChannel(StrictHead, http.HTTPChannel):
    """
    An HTTP/1.1 channel that counts itself in the connection limits and
    gives a client C{handshake_timeout} seconds, in all, to send a complete
    request head (slowloris), not merely some byte now and then.

    A service's upgrade that comes whole in the first read takes the fast
    path (L{tunnelgw.web.upgrade}): admitted without twisted.web, then
    handed to autobahn with the bytes it came in.  A head twisted.web
    would close on silently or wait on is answered (L{StrictHead}).
    """

    log = Logger()
    transport: Any  # ITCPTransport or TLS; untyped in Twisted
    site: GatewaySite
    lease: Lease | None = None
    conn_id: str = ""
    _deadline: Deadline | None = None
    _first_read = True
    # on the fast path, while the upgrade is admitted: the head and what
    # the client sent after it (bounded: reading stops past EARLY_BYTES)
    _upgrade: Upgrade | None = None
    _early: list[bytes] | None = None
    EARLY_BYTES = 0x4000  # as twisted.web's HTTPChannel (_optimisticEagerReadSize)

    def connectionMade(self) -> None:
        # twisted.web's own set-up (TCP_NODELAY, the channel registered as
        # its transport's producer) waits until twisted.web reads this
        # connection (the first read, in dataReceived): an upgrade on the
        # fast path never needs it (autobahn sets TCP_NODELAY itself).
        self.conn_id = _new_conn_id()
        peer = self.transport.getPeer()
        self.peer_host = getattr(peer, "host", "unix")
        self.lease = self.site.limiter.acquire(self.peer_host)
        self._start_deadline()

    def _start_deadline(self) -> None:
        queue = deadlines(self.site.clock, self.site.config.handshake_timeout)
        self._deadline = queue.call(self._deadline_passed)

    def _stop_deadline(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _deadline_passed(self) -> None:
        self._deadline = None
        self.log.info(
            "connection {conn_id} from {peer}: no complete request within {timeout}s",
            event="handshake_timeout",
            conn_id=self.conn_id,
            peer=self.peer_host,
            timeout=self.site.config.handshake_timeout,
        )
        self.transport.write(
            b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        )
        self.transport.loseConnection()
        self.site.clock.callLater(1.0, self.transport.abortConnection)

    def dataReceived(self, data: bytes) -> None:
        if self._early is not None:
            self._early.append(data)
            if sum(map(len, self._early)) > self.EARLY_BYTES:
                self.transport.pauseProducing()
            return
        if self._first_read:
            self._first_read = False
            if self._fast_upgrade(data):
                return
            super().connectionMade()  # twisted.web's part of it, now needed
        if self.check_head(data):
            super().dataReceived(data)

    def _fast_upgrade(self, data: bytes) -> bool:
        head = parse_upgrade_head(data)
        if head is None:
            return False
        resource = self.site.upgrades.get(head.path)
        if resource is None or self.lease is None:
            return False
        self._stop_deadline()
        areq = AdmissionRequest(
            conn_id=self.conn_id,
            peer_host=self.peer_host,
            path=head.path.decode("ascii"),
            method="GET",
            headers=head.headers,
            lease=self.lease,
            # as twisted.web's isSecure, without its adapter lookup
            secure=ISSLTransport.providedBy(self.transport),
            query=_decoded_args(head.query),
            peer_certificate=_peer_certificate(self.transport),
        )
        self._early = [data]
        upgrade = resource.upgrade(areq, self, self._hand_over, self._refuse_upgrade)
        if self._early is not None:  # not yet decided (it may be at once)
            self._upgrade = upgrade
        return True

    def _hand_over(self, factory: AdmittedFactory) -> None:
        transport, self.transport = self.transport, None
        early, self._early, self._upgrade = self._early or [], None, None
        protocol = factory.buildProtocol(transport.getPeer())
        take_over(transport, protocol)
        transport.resumeProducing()  # if the early bytes paused it
        # autobahn parses the head again, then takes what followed as frames
        protocol.dataReceived(b"".join(early))

    def _refuse_upgrade(self, refusal: Refusal) -> None:
        self._early = self._upgrade = None
        # the connection closes: nothing more is read (as twisted.web's
        # channel drops what follows a request it will not keep alive for)
        self.dataReceived = lambda data: None  # type: ignore[method-assign]
        self.transport.write(refusal_response(refusal))
        self.transport.loseConnection()

    def allHeadersReceived(self) -> None:
        # A declared body over the limit is refused before any of it is read
        # (twisted.web would otherwise spool it to a temporary file).
        if self.length is not None and self.length > self.site.config.max_request_body:
            self.body_too_large()
            return
        super().allHeadersReceived()

    def body_too_large(self) -> None:
        """
        Answer 413 and close; the parser stops once the transport is closing.
        """
        if self.transport.disconnecting:
            return
        self._stop_deadline()
        self.log.info(
            "connection {conn_id} from {peer}: request body over {limit} bytes",
            event="admission",
            decision="refuse",
            status=413,
            conn_id=self.conn_id,
            peer=self.peer_host,
            limit=self.site.config.max_request_body,
            reason="request body too large",
        )
        self.transport.write(
            b"HTTP/1.1 413 Content Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        )
        self.loseConnection()

    def allContentReceived(self) -> None:
        self._stop_deadline()
        super().allContentReceived()

    forward: Any = None
    """The WebSocket protocol this connection was handed to (twisted.web's path)."""

    def rawDataReceived(self, data: bytes) -> None:
        # twisted.web hands the rest of a read to this once a request's head
        # is in; after an upgrade admitted in that read, it is the
        # WebSocket's (frames sent with the head), not a pipelined request.
        if self.forward is not None:
            self.forward.dataReceived(data)
            return
        super().rawDataReceived(data)

    def requestDone(self, request: Any) -> None:
        super().requestDone(request)
        if self.persistent and self.transport is not None:
            self._start_deadline()

    def take_lease(self) -> Lease | None:
        """
        The connection becomes a tunnel: its lease goes with it.
        """
        lease, self.lease = self.lease, None
        self._stop_deadline()
        return lease

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self._stop_deadline()
        if self._upgrade is not None:
            upgrade, self._upgrade, self._early = self._upgrade, None, None
            upgrade.cancel()
        if self.lease is not None:
            self.lease.release()
            self.lease = None
        super().connectionLost(reason)


def _headers_of(request: server.Request) -> dict[str, list[str]]:
    return {
        name.decode("latin-1").lower(): [v.decode("latin-1") for v in values]
        for name, values in request.requestHeaders.getAllRawHeaders()
    }


def _decoded_args(args: dict[bytes, list[bytes]]) -> dict[str, list[str]]:
    """
    Query arguments as twisted.web parses them (C{Request.args}), as text.
    """
    return {k.decode("latin-1"): [v.decode("latin-1") for v in vs] for k, vs in args.items()}


def admission_request(request: server.Request) -> AdmissionRequest:
    """
    What the pipeline and the login modules see of a twisted.web request.
    """
    channel = cast(GatewayChannel, request.channel)
    assert channel.lease is not None, "a request outlived its connection's lease"
    return AdmissionRequest(
        conn_id=getattr(channel, "conn_id", "") or _new_conn_id(),
        peer_host=getattr(channel, "peer_host", "unknown"),
        path=request.path.decode("latin-1"),
        method=request.method.decode("latin-1"),
        http_version=request.clientproto.decode("latin-1"),
        headers=_headers_of(request),
        lease=channel.lease,
        secure=request.isSecure(),
        query=_decoded_args(request.args),
        peer_certificate=_peer_certificate(channel.transport),
    )


def _peer_certificate(transport: Any) -> Any:
    """
    The client's certificate on a TLS connection that asked for one (and
    verified it against the listener's client_ca), as a cryptography
    certificate; otherwise C{None}.
    """
    if not ISSLTransport.providedBy(transport):
        return None
    certificate: Any = transport.getPeerCertificate()
    return certificate.to_cryptography() if certificate is not None else None


def _detach(request: server.Request) -> None:
    """
    The request's connection is now a WebSocket's: the HTTP channel and
    the request will never be used again.  They hold each other (the
    channel's queue of requests, the request's finish notifications and
    the closures on them), so without this each upgrade would leave a
    cycle for the garbage collector, and collecting those is most of what
    a busy gateway's collector does.
    """
    channel = request.channel
    if channel is not None:
        channel.requests = []
    request.notifications = []


def _refuse(request: server.Request, refusal: Refusal) -> None:
    request.setResponseCode(refusal.status, status_phrase(refusal.status).encode("ascii"))
    headers, body = refusal_parts(refusal)
    for name, value in headers.items():
        request.setHeader(name, value)
    request.write(body)
    # The response says "Connection: close", and means it: twisted.web keeps
    # a connection open by the request's headers alone (an upgrade's say
    # "Upgrade"), and would read what follows (a body's leftovers, another
    # request) as the next request.
    request.channel.persistent = False
    request.finish()


class ServiceResource(Resource):
    """
    One service's URL: admits WebSocket upgrades and hands the admitted
    connection to autobahn.
    """

    isLeaf = True
    log = Logger()

    def __init__(self, site: GatewaySite, service: ServiceConfig) -> None:
        super().__init__()
        self.site = site
        self.service = service
        self.factory = make_factory(service, site.clock, site.registry, site.config.policy(service.policy))

    def render(self, request: server.Request) -> Any:
        def hand_over(factory: AdmittedFactory) -> None:
            # What the client sent after its head, before its 101, waits in
            # the channel (which stopped reading past 16 KiB of it) and
            # would be dropped with it: autobahn reads it after the head.
            early = b"".join(getattr(request.channel, "_dataBuffer", None) or ())
            channel = cast(GatewayChannel, request.channel)
            factory.channel_is_producer = True
            WebSocketResource(factory).render(request)
            _detach(request)
            if factory.protocol is not None:
                if early:
                    factory.protocol.dataReceived(early)
                # admitted at once, in the read that ended the head: what
                # followed it in that read is still to come, to the channel
                channel.forward = factory.protocol

        # asked for first: an upgrade may be decided at once, and the hand
        # over then detaches the request from its notifications
        finished = request.notifyFinish()
        upgrade = self.upgrade(
            admission_request(request),
            cast(GatewayChannel, request.channel),
            hand_over,
            lambda refusal: _refuse(request, refusal),
        )
        finished.addErrback(lambda _: upgrade.cancel())
        return server.NOT_DONE_YET

    def upgrade(
        self,
        areq: AdmissionRequest,
        channel: GatewayChannel,
        hand_over: Callable[[AdmittedFactory], None],
        refuse: Callable[[Refusal], None],
    ) -> Upgrade:
        """
        Admit C{areq}, an upgrade on C{channel}: then C{hand_over} the
        connection to autobahn (a factory for its protocol), or C{refuse}.
        """
        return Upgrade(self, areq, channel, hand_over, refuse)


class Upgrade:
    """
    One WebSocket upgrade from admission to hand-over, whichever HTTP
    parser read it (twisted.web's, or the fast path's).
    """

    log = Logger()

    def __init__(
        self,
        resource: ServiceResource,
        areq: AdmissionRequest,
        channel: GatewayChannel,
        hand_over: Callable[[AdmittedFactory], None],
        refuse: Callable[[Refusal], None],
    ) -> None:
        self._resource = resource
        self._areq = areq
        self._channel = channel
        self._hand_over = hand_over
        self._refuse = refuse
        self._gone = False
        self._admission = d = resource.site.pipeline.admit(areq, resource.service, check_websocket_upgrade)
        d.addCallbacks(self._admitted, self._refused)
        d.addErrback(self._failed)

    def cancel(self) -> None:
        """
        The client went away: stop the admission, or abandon what it admitted.
        """
        self._gone = True
        self._admission.cancel()

    def _admitted(self, admission: Admission) -> None:
        if self._gone:
            admission.abandon()
            return
        resource = self._resource
        resource.site.pipeline.log_decision(
            self._areq,
            resource.service.name,
            admission.subprotocol,
            "accept",
            101,
            "switching protocols",
            admission.subject.principal,
        )
        lease = self._channel.take_lease()
        self._hand_over(AdmittedFactory(resource.factory, admission, lease, resource.site.clock))

    def _refused(self, f: Failure) -> None:
        if f.check(defer.CancelledError) or self._gone:
            return
        f.trap(Refusal)
        self._refuse(cast(Refusal, f.value))

    def _failed(self, f: Failure) -> None:
        self.log.failure("upgrade of {conn_id} failed", f, conn_id=self._areq.conn_id)


class LinkResource(Resource):
    """
    Where an inner gateway dials in (C{[links.NAME] path}): only over TLS
    with the inner's client certificate (its subject as configured), only
    for the link subprotocol.  The open link waits in its pool.
    """

    isLeaf = True
    log = Logger()

    def __init__(self, site: GatewaySite, pool: Any) -> None:
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


def admit_link(site: GatewaySite, link: Any, request: dict[str, Any]) -> None:
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

    def __init__(self, site: GatewaySite) -> None:
        super().__init__()
        self._site = site

    def render(self, request: server.Request) -> Any:
        if request.method != b"POST":
            _refuse(request, Refusal(405, "refresh with POST", {"Allow": "POST"}))
            return server.NOT_DONE_YET
        return self.render_POST(request)

    def render_POST(self, request: server.Request) -> Any:
        areq = admission_request(request)
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
        if not request.finished and not request._disconnected:
            _refuse(request, refusal)


class HealthResource(Resource):
    """
    C{GET} answers 200 with a small JSON document while the gateway serves.
    """

    isLeaf = True

    def __init__(self, site: GatewaySite) -> None:
        super().__init__()
        self._site = site

    def render(self, request: server.Request) -> Any:
        if request.method not in (b"GET", b"HEAD"):
            _refuse(request, Refusal(405, "health is read with GET", {"Allow": "GET, HEAD"}))
            return server.NOT_DONE_YET
        return self.render_GET(request)

    def render_GET(self, request: server.Request) -> bytes:
        request.setHeader("Content-Type", "application/json")
        request.setHeader("Cache-Control", "no-store")
        body = {
            "status": "ok",
            "tunnels": len(self._site.registry),
            "connections": self._site.limiter.total,
        }
        return json.dumps(body).encode("ascii") + b"\n"


class _Router(Resource):
    """
    Exact-path routing: a service path matches itself only.
    """

    isLeaf = True
    log = Logger()

    def __init__(self, routes: dict[bytes, Resource]) -> None:
        super().__init__()
        self._routes = routes

    def render(self, request: server.Request) -> Any:
        request.setHeader("Server", "tunnelgw")
        if b"#" in request.uri:
            # RFC 9112 3.2: a request target has no fragment (and RFC 6455
            # 3: a WebSocket URI must not); the fast path leaves these here
            return self._refused(request, Refusal(400, "the request target has a fragment"))
        target = self._routes.get(request.path)
        if target is not None:
            return target.render(request)
        return self._refused(request, Refusal(404, "no service at this path"))

    def _refused(self, request: server.Request, refusal: Refusal) -> Any:
        self.log.info(
            "{status} for {path} for {conn_id} from {peer}: {reason}",
            event="admission",
            decision="refuse",
            status=refusal.status,
            conn_id=getattr(request.channel, "conn_id", ""),
            peer=getattr(request.channel, "peer_host", ""),
            path=request.path.decode("latin-1"),
            reason=refusal.reason,
        )
        _refuse(request, refusal)
        return server.NOT_DONE_YET


class GatewayRequest(server.Request):
    """
    A request whose body (chunked, so not declared up front) is counted as
    it arrives and refused past C{gateway.max_request_body}.
    """

    _body_size = 0

    def handleContentChunk(self, data: bytes) -> None:
        channel = cast(GatewayChannel, self.channel)
        self._body_size += len(data)
        if self._body_size > channel.site.config.max_request_body:
            channel.body_too_large()
            return
        super().handleContentChunk(data)


class GatewaySite(server.Site):
    """
    The gateway's HTTP front for one configuration.
    """

    protocol = GatewayChannel  # type: ignore[assignment]  # HTTP/1.1 only: upgrades need it
    requestFactory = GatewayRequest
    noisy = False

    def __init__(
        self, config: GatewayConfig, reactor: Any, pipeline: AdmissionPipeline, authenticator: Any = None
    ) -> None:
        self.config = config
        self.authenticator = authenticator
        self.clock: IReactorTime = reactor
        self.pipeline = pipeline
        self.limiter = ConnectionLimiter(config.max_connections, config.max_connections_per_address)
        self.registry = TunnelRegistry()
        routes: dict[bytes, Resource] = {
            service.path.encode("utf-8"): ServiceResource(self, service) for service in config.services
        }
        if config.health_path:
            routes[config.health_path.encode("utf-8")] = HealthResource(self)
        if authenticator is not None:
            routes[config.refresh_path.encode("utf-8")] = RefreshResource(self)
        for pool in pipeline.links.values():
            routes[pool.config.path.encode("utf-8")] = LinkResource(self, pool)
        # the services' paths, for the upgrade fast path
        self.upgrades = {path: r for path, r in routes.items() if isinstance(r, ServiceResource)}
        # timeout=None: twisted.web's idle timer (reset on every read) is
        # redundant with GatewayChannel's deadline, which is stricter.
        super().__init__(_Router(routes), timeout=None, reactor=reactor)
        self.displayTracebacks = False

    def buildProtocol(self, addr: Any) -> GatewayChannel:  # type: ignore[override]
        channel = super().buildProtocol(addr)
        assert isinstance(channel, GatewayChannel)
        channel.site = self
        return channel

    def log(self, request: http.Request) -> None:
        """
        No access log: admission decisions are logged as structured events.
        """
