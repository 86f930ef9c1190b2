"""
Upstream kinds: how a service's C{upstream} description becomes the
tunnel's backend leg, one kind per scheme (L{IUpstreamKind}).

Shipped, tried in this order: C{tcp:} (a byte stream; a name or an
address, with the connect timeout), C{wss://} (another gateway, which
carries messages: the C{chain} adapter), C{reverse:NAME} (an inner gateway
that dialled in), the kinds other packages add as plugins, and last any
other Twisted client endpoint description (C{tls:}, C{unix:}).  The
admission pipeline asks L{kind_of} and calls the kind's C{connect} once
the client is admitted; the configuration loader asks it to C{check} the
description at start-up.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import IReactorCore, ISSLTransport, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactor
from twisted.python.failure import Failure
from zope.interface import implementer

from tunnelgw.config.model import ServiceConfig
from tunnelgw.errors import Refusal
from tunnelgw.interfaces import IUpstreamKind
from tunnelgw.logs import Logger
from tunnelgw.tunnel.legs import BackendProtocol
from tunnelgw.upstream import address_of, check_tcp, endpoint_for
from tunnelgw.upstream.chain import REVERSE, check_url
from tunnelgw.upstream.chain import connect as connect_chain
from tunnelgw.upstream.direct import connect_backend

__all__ = [
    "BYTES",
    "MESSAGES",
    "UpstreamRequest",
    "TcpKind",
    "GatewayKind",
    "ReverseKind",
    "EndpointKind",
    "BUILTIN_FIRST",
    "BUILTIN_LAST",
    "connect_stream",
]

BYTES = "bytes"
"""A kind (or adapter) that carries a byte stream."""
MESSAGES = "messages"
"""A kind (or adapter) that carries WebSocket messages as they are."""

log = Logger()


@dataclass(frozen=True)
class UpstreamRequest:
    """
    What a kind is given to connect one admitted client's backend.
    """

    reactor: IReactorCore
    service: ServiceConfig
    subject: Any
    """The authenticated L{tunnelgw.security.Subject}."""
    subprotocol: str | None
    request: Any
    """The L{tunnelgw.admission.request.AdmissionRequest}."""
    links: Mapping[str, Any]
    """The L{tunnelgw.upstream.links.LinkPool}s, by name."""
    endpoint_for: Callable[[IReactorCore, str, float], IStreamClientEndpoint] = endpoint_for

    @property
    def description(self) -> str:
        assert self.service.upstream is not None
        return self.service.upstream

    @property
    def timeout(self) -> float:
        return self.service.limits.connect_timeout


class _BackendFactory(Factory):
    noisy = False  # no "Starting/Stopping factory" line per backend connection
    protocol = BackendProtocol


_BACKEND_FACTORY = _BackendFactory()


def _tls_reason(f: Failure) -> str:
    """
    Why a TLS handshake failed, for the log: OpenSSL's reasons (its error
    is a list of (library, function, reason)), or the verifier's message.
    """
    errors = getattr(f.value, "args", ())
    if errors and isinstance(errors[0], list):
        reasons = [str(e[-1]) for e in errors[0] if isinstance(e, tuple) and e]
        if reasons:
            return ", ".join(reasons)
    return f.getErrorMessage()


def _verified(backend: Any, upstream: UpstreamRequest) -> Any:
    """
    A TLS backend is connected once its handshake is done and its
    certificate and name verified (a TLS endpoint reports the TCP
    connection): a wrong CA or name is then a 502 before the upgrade, not
    a WebSocket opened and closed with 1011.
    """
    if not ISSLTransport.providedBy(backend.transport):
        return backend

    def failed(f: Failure) -> Failure:
        if f.check(defer.CancelledError):
            return f
        log.warn(
            "TLS with the backend of {service} failed for {conn_id}: {reason}",
            event="backend_tls_failed",
            conn_id=upstream.request.conn_id,
            service=upstream.service.name,
            reason=_tls_reason(f),
        )
        raise Refusal(502, "TLS with the backend failed")

    return backend.secured().addErrback(failed)


def connect_stream(endpoint: IStreamClientEndpoint, upstream: UpstreamRequest) -> defer.Deferred[Any]:
    """
    Connect a byte-stream backend through C{endpoint}: its leg, once
    connected (and, over TLS, verified).  For kinds other packages add.
    """
    return endpoint.connect(_BACKEND_FACTORY).addCallback(_verified, upstream)


def _connect_description(upstream: UpstreamRequest) -> defer.Deferred[Any]:
    if upstream.endpoint_for is endpoint_for:
        address = address_of(upstream.description)
        if address is not None:  # an address literal: no endpoint needed
            return connect_backend(upstream.reactor, address, upstream.timeout)  # type: ignore[arg-type]
    endpoint = upstream.endpoint_for(upstream.reactor, upstream.description, upstream.timeout)
    return connect_stream(endpoint, upstream)


@implementer(IUpstreamKind)
class TcpKind:
    """C{tcp:HOST:PORT}: a name (IPv4 and IPv6) or an address literal."""

    name = "tcp"
    carries = BYTES
    bounds_itself = True  # the endpoint fails by itself after the timeout

    def claims(self, description: str) -> bool:
        return description.startswith("tcp:")

    def check(self, description: str) -> None:
        check_tcp(description)

    def connect(self, upstream: UpstreamRequest) -> defer.Deferred[Any]:
        return _connect_description(upstream)


@implementer(IUpstreamKind)
class EndpointKind:
    """Any other Twisted client endpoint description (C{tls:}, C{unix:})."""

    name = "endpoint"
    carries = BYTES
    bounds_itself = False

    def claims(self, description: str) -> bool:
        return True

    def check(self, description: str) -> None:
        try:
            clientFromString(MemoryReactor(), description)
        except Exception as e:  # Twisted raises ValueError, KeyError, TypeError...
            raise ValueError(f"invalid endpoint description {description!r}: {e}") from None

    def connect(self, upstream: UpstreamRequest) -> defer.Deferred[Any]:
        return _connect_description(upstream)


@implementer(IUpstreamKind)
class GatewayKind:
    """C{wss://HOST:PORT/PATH}: another tunnelgw, dialled (the C{chain} adapter)."""

    name = "gateway"
    carries = MESSAGES
    bounds_itself = False

    def claims(self, description: str) -> bool:
        return "://" in description

    def check(self, description: str) -> None:
        check_url(description)

    def connect(self, upstream: UpstreamRequest) -> defer.Deferred[Any]:
        return connect_chain(upstream.reactor, upstream.service, upstream.subject, upstream.subprotocol)


@implementer(IUpstreamKind)
class ReverseKind:
    """C{reverse:NAME}: an inner tunnelgw that dialled in to C{[links.NAME]}."""

    name = "reverse"
    carries = MESSAGES
    bounds_itself = True  # the pool's wait plus the connect timeout

    def claims(self, description: str) -> bool:
        return description.startswith(REVERSE)

    def check(self, description: str) -> None:
        if not self.links_of(description):
            raise ValueError("expected reverse:NAME, the [links.NAME] inner gateways dial in to")

    def links_of(self, description: str) -> str:
        """The C{[links.NAME]} the description names."""
        return description[len(REVERSE) :]

    def connect(self, upstream: UpstreamRequest) -> defer.Deferred[Any]:
        pool = upstream.links[self.links_of(upstream.description)]
        d: defer.Deferred[Any] = pool.session(
            upstream.service, upstream.subject, upstream.subprotocol, upstream.request.single("Origin")
        )
        return d.addTimeout(pool.config.wait_timeout + upstream.timeout, upstream.reactor)  # type: ignore[arg-type]


BUILTIN_FIRST: tuple[IUpstreamKind, ...] = (TcpKind(), GatewayKind(), ReverseKind())
"""Tried before the plugins' kinds."""
BUILTIN_LAST: tuple[IUpstreamKind, ...] = (EndpointKind(),)
"""Tried after them: the catch-all."""
