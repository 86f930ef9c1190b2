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
from importlib import resources
from io import BytesIO
from typing import Any, cast

from twisted.internet.interfaces import IReactorTime
from twisted.web import http, server
from twisted.web.resource import Resource

from tunnelgw.admission.pipeline import AdmissionPipeline
from tunnelgw.config.model import GatewayConfig
from tunnelgw.errors import Refusal
from tunnelgw.fallback.framing import HEADER
from tunnelgw.front.channel import GatewayChannel
from tunnelgw.front.link_resource import LinkResource
from tunnelgw.front.refresh import RefreshResource
from tunnelgw.front.requests import _refuse
from tunnelgw.front.resources import ServiceResource
from tunnelgw.front.sessions import FallbackSessions
from tunnelgw.limits import ConnectionLimiter
from tunnelgw.logs import Logger
from tunnelgw.tunnel.registry import TunnelRegistry

__all__ = ["GatewaySite"]


class HealthResource(Resource):
    """
    C{GET} answers 200 with a small JSON document while the gateway serves,
    503 (C{"status": "draining"}) while it drains.
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
        draining = self._site.pipeline.draining
        if draining:
            # a load balancer's health check takes the instance out
            request.setResponseCode(503)
        body = {
            "status": "draining" if draining else "ok",
            "tunnels": len(self._site.registry),
            "connections": self._site.limiter.total,
        }
        return json.dumps(body).encode("ascii") + b"\n"


CLIENT_PATH = "/tunnelgw/tunnelsocket.js"
"""Where a gateway with a fallback service serves the client (L{ClientScript})."""


class ClientScript(Resource):
    """
    The fallback's JavaScript client (C{tunnelgw/fallback/client/}), for
    pages to load from the gateway itself.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self._body = resources.files("tunnelgw.fallback").joinpath("client", "tunnelsocket.js").read_bytes()

    def render(self, request: server.Request) -> Any:
        if request.method not in (b"GET", b"HEAD"):
            _refuse(request, Refusal(405, "the client is read with GET", {"Allow": "GET, HEAD"}))
            return server.NOT_DONE_YET
        request.setHeader("Content-Type", "text/javascript; charset=utf-8")
        request.setHeader("Cache-Control", "public, max-age=3600")
        request.setHeader("X-Content-Type-Options", "nosniff")
        return self._body


class _Router(Resource):
    """
    Exact-path routing: a service path matches itself only.
    """

    isLeaf = True
    log = Logger()

    def __init__(self, routes: dict[bytes, Resource], sessions: FallbackSessions | None = None) -> None:
        super().__init__()
        self._routes = routes
        self._sessions = sessions

    def render(self, request: server.Request) -> Any:
        request.setHeader("Server", "tunnelgw")
        if b"#" in request.uri:
            # RFC 9112 3.2: a request target has no fragment (and RFC 6455
            # 3: a WebSocket URI must not); the fast path leaves these here
            return self._refused(request, Refusal(400, "the request target has a fragment"))
        target = self._closing_session(request) or self._routes.get(request.path)
        if target is not None:
            return target.render(request)
        return self._refused(request, Refusal(404, "no service at this path"))

    def _closing_session(self, request: server.Request) -> Any:
        """
        The endpoint that opened the fallback session this request is of,
        if the gateway has closed that session: whatever the configuration
        says now (a reload that removed its service, withdrew its fallback
        or its origin is what closed it), the client gets its close frame
        and its close is taken, as a WebSocket's would be.
        """
        if self._sessions is None:
            return None
        session = None
        if request.method == b"POST":
            session_id = request.getHeader("x-tunnel-session")
            session = self._sessions.get(session_id) if session_id is not None else None
        elif request.method == b"OPTIONS":
            # a preflight names no session: one from its origin at its path
            origin = request.getHeader("origin")
            if origin is not None:
                session = self._sessions.closing_at(request.path.decode("utf-8", "replace"), origin)
        if session is None or not session.closing or session.over:
            return None
        if session.service.path.encode("utf-8") != request.path:
            return None
        return session.opened_by  # a FallbackEndpoint

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
    it arrives and refused past its path's limit (L{GatewaySite.body_limit}),
    and kept in memory (bounded so), never spooled to a temporary file.
    """

    _body_size = 0

    def gotLength(self, length: int | None) -> None:
        self.content = BytesIO()

    def handleContentChunk(self, data: bytes) -> None:
        channel = cast(GatewayChannel, self.channel)
        self._body_size += len(data)
        if self._body_size > channel.body_limit:
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
        self.clock: IReactorTime = reactor
        self.limiter = ConnectionLimiter(config.max_connections, config.max_connections_per_address)
        self.registry = TunnelRegistry()
        self.fallback = FallbackSessions(config.fallback.max_sessions)
        """The open fallback sessions (they live across reloads, as tunnels do)."""
        # timeout=None: twisted.web's idle timer (reset on every read) is
        # redundant with GatewayChannel's deadline, which is stricter.
        super().__init__(_Router({}), timeout=None, reactor=reactor)
        self.displayTracebacks = False
        self.configure(config, pipeline, authenticator)

    def configure(
        self, config: GatewayConfig, pipeline: AdmissionPipeline, authenticator: Any = None
    ) -> None:
        """
        Serve C{config} from now on (a reload): new requests find its
        routes, caps and pipeline; connections and tunnels already open keep
        theirs (the reload re-judges the tunnels).
        """
        self.config = config
        self.authenticator = authenticator
        self.pipeline = pipeline
        self.limiter.max_connections = config.max_connections
        self.limiter.max_per_address = config.max_connections_per_address
        self.fallback.max_sessions = config.fallback.max_sessions
        self.fallback.reload_forwarder()
        self._body_limits = {
            service.path.encode("utf-8"): max(
                config.max_request_body, service.limits.max_message_size + HEADER
            )
            for service in config.services
            if service.fallback
        }
        routes: dict[bytes, Resource] = {
            service.path.encode("utf-8"): ServiceResource(self, service) for service in config.services
        }
        if config.health_path:
            routes[config.health_path.encode("utf-8")] = HealthResource(self)
        if authenticator is not None:
            routes[config.refresh_path.encode("utf-8")] = RefreshResource(self)
        if any(service.fallback for service in config.services):
            routes.setdefault(CLIENT_PATH.encode("utf-8"), ClientScript())
        for pool in pipeline.links.values():
            routes[pool.config.path.encode("utf-8")] = LinkResource(self, pool)
        # the services' paths, for the upgrade fast path
        self.upgrades = {path: r for path, r in routes.items() if isinstance(r, ServiceResource)}
        self.resource = _Router(routes, self.fallback)

    def body_limit(self, path: bytes | str) -> int:
        """
        The largest request body taken at C{path}: C{max_request_body}, or
        a fallback service's largest message in a frame if that is more.
        """
        if isinstance(path, str):
            path = path.encode("utf-8")
        return self._body_limits.get(path, self.config.max_request_body)

    def buildProtocol(self, addr: Any) -> GatewayChannel:  # type: ignore[override]
        channel = super().buildProtocol(addr)
        assert isinstance(channel, GatewayChannel)
        channel.site = self
        return channel

    def log(self, request: http.Request) -> None:
        """
        No access log: admission decisions are logged as structured events.
        """
