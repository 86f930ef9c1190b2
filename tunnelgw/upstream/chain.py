"""
Gateway chaining: a service whose upstream is another tunnelgw
(C{upstream = "wss://inner.example:8443/app"}, C{adapter = "chain"}).

The outer gateway connects to the inner one as a WebSocket client, before
answering its own client's upgrade: over TLS with its client certificate,
the inner's certificate verified against the configured CA and name
(service-identity), offering exactly the subprotocol its client chose, and
carrying the authenticated subject as a signed, short-lived identity
assertion (L{tunnelgw.security.signer}).  The inner gateway admits it
through its own pipeline (its C{assertion} login module, its roles, its
policies) and runs the real adapter against the backend; the outer relays
messages as they are, so message boundaries, types and the inner's
per-operation checks are kept.

Close codes cross the hop: the inner's close code (a revocation's 1008, a
backend's 1000) reaches the client; an inner gateway that vanishes gives
1014.  The inner's refusal of the upgrade becomes the outer's HTTP answer:
401/403 → 403, 429/503 → 503, anything else → 502.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import hyperlink
import jwt as pyjwt

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from tunnelgw.config.model import ServiceConfig
from tunnelgw.config.values import ConfigError, Table, positive_seconds_value, string_value
from tunnelgw.errors import Refusal
from tunnelgw.interfaces import IAdapter, IAdapterFactory, ITunnel
from tunnelgw.security import Subject
from tunnelgw.security.signer import ASSERTION_HEADER, AssertionSigner
from tunnelgw.tls import certificates, key_kind, private_key
from tunnelgw.tls import client_tls as tls_client
from tunnelgw.websocket.leg import WebSocketLeg

__all__ = [
    "ChainAdapterFactory",
    "ChainOptions",
    "ChainProtocol",
    "MessageLeg",
    "client_tls",
    "connect",
    "refusal_of",
    "reverse_links_of",
]

BAD_GATEWAY = 1014


REVERSE = "reverse:"


def reverse_links_of(upstream: str) -> str | None:
    """
    The C{[links.NAME]} of a C{reverse:NAME} upstream (possibly empty), or
    C{None} for any other upstream.
    """
    return upstream[len(REVERSE) :] if upstream.startswith(REVERSE) else None


def check_url(upstream: str) -> tuple[str, int, str]:
    """
    @return: host, port and path of a C{wss://} upstream.
    @raise ValueError: not one.
    """
    url = hyperlink.URL.from_text(upstream)
    if url.scheme != "wss" or not url.host or url.query or url.fragment or url.userinfo:
        raise ValueError(f"expected wss://HOST[:PORT]/PATH (another tunnelgw), got {upstream!r}")
    return url.host, url.port or 443, "/" + "/".join(url.path)


@dataclass(frozen=True)
class ChainOptions:
    tls: Any
    signer: AssertionSigner


class _Refused(Exception):
    pass


class MessageLeg(WebSocketLeg):
    """
    A WebSocket as a tunnel's backend leg (L{tunnelgw.tunnel.legs.BackendLeg}):
    holds what arrives until its tunnel attaches, then relays messages;
    passes the close code it got on to the tunnel.  Mixed into the autobahn
    protocols of both kinds of gateway link.
    """

    transport: Any

    def __init__(self) -> None:
        self.tunnel: Any = None
        self._held: list[tuple[bytes, bool]] = []
        self._ended: tuple[int, str] | None = None

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.tunnel is None:
            self._held.append((payload, isBinary))  # at most one read's worth
        else:
            self.tunnel.backend_message(payload, isBinary)

    def ended(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if wasClean and code is not None:
            self._ended = (code, reason or "the inner gateway closed")
        else:
            self._ended = (BAD_GATEWAY, "the inner gateway went away")
        if self.tunnel is not None:
            self._tell_tunnel()

    def _tell_tunnel(self) -> None:
        assert self._ended is not None
        code, why = self._ended
        self.tunnel.backend_lost(Failure(ConnectionDone()), code, why)

    def attach(self, tunnel: Any) -> None:
        self.tunnel = tunnel
        held, self._held = self._held, []
        for payload, is_binary in held:
            tunnel.backend_message(payload, is_binary)
        if self._ended is not None:
            self._tell_tunnel()

    def write(self, data: bytes) -> None:
        raise TypeError("a chained gateway takes messages, not bytes")

    def finish(self) -> None:
        self.close(1000, "client closed")


class ChainProtocol(MessageLeg, WebSocketClientProtocol):  # type: ignore[misc]
    """
    The outer gateway's leg to the inner gateway in forward mode: a
    WebSocket client, opened before the outer answers its own client.
    """

    def __init__(self) -> None:
        WebSocketClientProtocol.__init__(self)
        MessageLeg.__init__(self)
        self.opened: defer.Deferred[ChainProtocol] = defer.Deferred(lambda d: self.abort())
        self._refusal: tuple[int, str] | None = None

    def failHandshake(self, reason: str) -> None:
        status_line = getattr(self, "http_status_line", None) or ""
        parts = status_line.split(None, 2)
        if len(parts) >= 2 and parts[1].isdigit():
            self._refusal = (int(parts[1]), parts[2] if len(parts) > 2 else "")
        super().failHandshake(reason)

    def onOpen(self) -> None:
        # nothing is read from the inner gateway until the tunnel is wired
        self.transport.pauseProducing()
        self.opened.callback(self)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not self.opened.called:
            self.opened.errback(_Refused(self._why_refused()))
            return
        self.ended(wasClean, code, reason)

    def _why_refused(self) -> Any:
        if self._refusal is None:
            return Refusal(502, f"the inner gateway did not open the WebSocket: {self.wasNotCleanReason}")
        return refusal_of(*self._refusal)


def refusal_of(status: int, text: str) -> Any:
    """
    The outer's answer to a client when the inner refused with C{status}.
    """
    if status in (401, 403):
        return Refusal(403, f"the inner gateway refused: {status} {text}")
    if status in (429, 503):
        return Refusal(503, f"the inner gateway is busy: {status} {text}", {"Retry-After": "5"})
    return Refusal(502, f"the inner gateway answered {status} {text}")


def connect(
    reactor: Any, service: ServiceConfig, subject: Subject, subprotocol: str | None
) -> defer.Deferred[Any]:
    """
    Open the WebSocket to the inner gateway for one admitted client.

    @return: a Deferred firing with the open L{ChainProtocol}, or failing
        with L{tunnelgw.admission.pipeline.Refusal} (the inner refused) or a
        connection error (the pipeline maps it to 502/504).
    """
    assert service.upstream is not None
    options = cast(ChainOptions, service.adapter_options)
    host, port, _ = check_url(service.upstream)
    limits = service.limits
    token = options.signer.sign(subject, reactor.seconds())
    factory = WebSocketClientFactory(
        service.upstream,
        protocols=[subprotocol] if subprotocol else None,
        headers={ASSERTION_HEADER: token},
        reactor=reactor,
        useragent="tunnelgw",
    )
    factory.setProtocolOptions(
        version=13,
        utf8validateIncoming=True,
        maskClientFrames=True,
        maxFramePayloadSize=limits.max_frame_size,
        maxMessagePayloadSize=limits.max_message_size,
        openHandshakeTimeout=limits.connect_timeout,
        closeHandshakeTimeout=limits.close_handshake_timeout,
        autoPingInterval=limits.ping_interval,
        autoPingTimeout=limits.ping_timeout,
        failByDrop=False,
        tcpNoDelay=True,
    )
    factory.protocol = ChainProtocol
    factory.noisy = False
    endpoint = wrapClientTLS(
        options.tls, HostnameEndpoint(reactor, host, port, timeout=limits.connect_timeout)
    )
    d: defer.Deferred[Any] = endpoint.connect(factory)
    d.addCallback(lambda protocol: protocol.opened)

    def unwrap(f: Any) -> Any:
        if f.check(_Refused):
            raise f.value.args[0]
        return f

    d.addErrback(unwrap)
    return d


@implementer(IAdapter)
class ChainAdapter:
    """
    Messages from the client go to the inner gateway as they are (and its
    messages come back through L{tunnelgw.tunnel.relay.Tunnel.backend_message}).
    """

    def __init__(self, tunnel: ITunnel) -> None:
        self._tunnel = tunnel

    def client_message(self, payload: bytes, is_binary: bool) -> None:
        self._tunnel.send_backend_message(payload, is_binary)

    def backend_data(self, data: bytes) -> None:
        raise AssertionError("a chained gateway sends messages, not bytes")


TLS_KEYS = ("client_certificate", "client_key", "ca", "server_name")


def client_tls(t: Table) -> Any:
    """
    A TLS client connection creator from C{client_certificate},
    C{client_key}, C{ca} and C{server_name} (all required): our certificate
    and the rest of its chain in that file to present, and the peer's
    verified against every CA of C{ca} and the name (service-identity).
    """
    chain = certificates(t.key("client_certificate"), t.require("client_certificate", string_value))
    signing_key = private_key(t.key("client_key"), t.require("client_key", string_value))
    authorities = certificates(t.key("ca"), t.require("ca", string_value))
    server_name = t.require("server_name", string_value)
    return tls_client(server_name, authorities, chain, signing_key, t.key("client_key"))


@implementer(IAdapterFactory)
class ChainAdapterFactory:
    name = "chain"
    needs_upstream = True
    subprotocols = None  # whatever the inner gateway's service offers
    carries = "messages"  # the inner gateway's, as they are

    def check_upstream(self, description: str, options: ChainOptions, key: str) -> None:
        reverse = reverse_links_of(description) is not None
        if reverse and options.tls is not None:
            raise ConfigError(
                f"{key}: a reverse link is the inner gateway's TLS;"
                " client_certificate, client_key, ca and server_name do not apply"
            )
        if not reverse and options.tls is None:
            raise ConfigError(
                f"{key}: client_certificate, client_key, ca and server_name are needed for wss://"
            )

    def needs_policy(self, options: Any) -> bool:
        return False

    def parse_options(self, options: dict[str, Any], key: str) -> ChainOptions:
        t = Table(options, key)
        # forward mode dials the inner gateway over TLS; a reverse link
        # (the inner dialled us) needs none of these
        tls = client_tls(t) if any(k in options for k in TLS_KEYS) else None
        key_path = t.require("assertion_key", string_value)
        signer_key = private_key(t.key("assertion_key"), key_path)
        algorithm = t.choice("assertion_algorithm", ("ES256", "ES384", "RS256", "EdDSA"), "ES256")
        issuer = t.require("issuer", string_value)
        audience = t.require("audience", string_value)
        lifetime = t.take("assertion_lifetime", positive_seconds_value, 30.0)
        t.done()
        try:  # checked now, not at the first session's signature
            pyjwt.algorithms.get_default_algorithms()[algorithm].prepare_key(signer_key)
        except (pyjwt.InvalidKeyError, TypeError, ValueError):
            raise ConfigError(
                f"{t.key('assertion_key')}: {key_path}: {key_kind(signer_key)} cannot sign {algorithm}"
            ) from None
        return ChainOptions(tls, AssertionSigner(issuer, audience, signer_key, algorithm, lifetime))

    def build(self, tunnel: ITunnel) -> IAdapter:
        return ChainAdapter(tunnel)
