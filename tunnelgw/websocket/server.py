"""
The client leg: autobahn's WebSocket server protocol, hardened, feeding a
L{Tunnel}.

Admission has already happened when this protocol is built (see
L{tunnelgw.front.site.ServiceResource}): the handshake only answers with the
subprotocol the pipeline chose, and C{onOpen} starts the tunnel.
"""

from __future__ import annotations

import secrets
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from tunnelgw._compat.autobahn import ServerInternals, class_options, install_lazy_debug
from tunnelgw._compat.payloads import install_small_masks, install_text_validator
from tunnelgw._compat.txaio import TIMER_GRANULARITY, autobahn_seconds
from tunnelgw._compat.writes import close_now
from tunnelgw.admission.request import Admission
from tunnelgw.config.model import ServiceConfig
from tunnelgw.limits import Lease
from tunnelgw.tunnel.deadlines import Deadline, deadlines
from tunnelgw.tunnel.registry import TunnelRegistry
from tunnelgw.tunnel.relay import Tunnel
from tunnelgw.websocket.leg import WebSocketLeg
from tunnelgw.websocket.tls_reads import batch_tls_reads

__all__ = ["TunnelWebSocket", "make_factory", "AdmittedFactory", "start_tunnel"]


def start_tunnel(
    admission: Admission,
    client: Any,
    clock: IReactorTime,
    registry: TunnelRegistry,
    policy: Any,
    session_id: str = "",
    via: str = "websocket",
) -> Tunnel:
    """
    Start the tunnel of an admitted connection whose client leg (a
    WebSocket, a reverse link, a fallback session: C{via}) is open.
    """
    tunnel = Tunnel(
        reactor=clock,
        service=admission.service,
        subprotocol=admission.subprotocol,
        conn_id=admission.request.conn_id,
        peer=admission.request.peer_host,
        subject=admission.subject,
        adapter_factory=admission.adapter_factory,
        backend=admission.backend,
        registry=registry,
        session_id=session_id,
        policy=admission.policy if admission.policy is not None else policy,
        places=admission.places,
        origin=admission.origin,
        via=via,
    )
    tunnel.start(client)
    registry.started(tunnel)
    return tunnel


install_lazy_debug()  # shortcut lazy_debug (tunnelgw._compat.autobahn)
install_small_masks()  # shortcut small_masks (tunnelgw._compat.payloads)
install_text_validator()  # shortcut utf8_text (tunnelgw._compat.payloads)


class TunnelWebSocket(ServerInternals, WebSocketLeg, WebSocketServerProtocol):  # type: ignore[misc]
    """
    One admitted WebSocket connection.
    """

    transport: Any  # TCP or TLS transport, untyped in Twisted
    admission: Admission | None
    clock: IReactorTime
    tunnel: Tunnel | None = None
    # -- autobahn hooks (mixedCase: they override autobahn) -------------------

    session_id: str = ""

    def admitted_head(self) -> tuple[str | None, dict[str, str], str, list[str]] | None:
        admission = self.admission
        if admission is None:
            return None
        request = admission.request
        key = request.single("Sec-WebSocket-Key")
        assert key is not None, "check_websocket_upgrade lets no upgrade in without a key"
        return admission.subprotocol, self.response_headers(), key, request.subprotocols

    def response_headers(self) -> dict[str, str]:
        # The client presents this id (with fresh credentials) to the
        # refresh endpoint to keep the tunnel past its credentials' expiry.
        self.session_id = secrets.token_urlsafe(24)
        return {"X-Tunnel-Session": self.session_id}

    def onConnect(self, request: Any) -> tuple[str | None, dict[str, str]]:
        # autobahn's public path, where the head is parsed a second time
        # (the shortcut "handshake" off): admission chose the subprotocol.
        assert self.admission is not None
        return self.admission.subprotocol, self.response_headers()

    # twisted.web's HTTP channel registered itself as the producer of this
    # transport (not on the upgrade fast path, where twisted.web never read it)
    channel_is_producer = False

    def onOpen(self) -> None:
        if self.channel_is_producer:
            # the channel never learnt of the upgrade: the tunnel wires its
            # own producers
            self.transport.unregisterProducer()
        admission = self.admission
        assert admission is not None
        # The tunnel copies what it needs; the request (headers and all)
        # need not live as long as the tunnel.
        self.admission = None
        self.forget_handshake()
        self.tunnel = start_tunnel(
            admission,
            self,
            self.clock,
            self.factory.tunnelgw_registry,
            self.factory.tunnelgw_policy,
            self.session_id,
        )
        batch_tls_reads(self)

    batch: list[bytes] | None = None
    """While a TLS read is decrypted: its plaintext, delivered whole after (L{tls_reads})."""

    def deliver_batch(self) -> None:
        batch, self.batch = self.batch, None
        if batch:
            self.dataReceived(batch[0] if len(batch) == 1 else b"".join(batch))

    def dataReceived(self, data: bytes) -> None:
        batch = self.batch
        if batch is not None:
            batch.append(data)
            return
        tunnel = self.tunnel
        if tunnel is None:
            super().dataReceived(data)
            return
        # every message of this read reaches the backend in one write
        tunnel.cork()
        try:
            super().dataReceived(data)
        finally:
            tunnel.uncork()

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.tunnel is not None:
            self.tunnel.client_message(payload, isBinary)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self.tunnel is not None:
            self.tunnel.client_closed(wasClean, code, reason)
        elif self.admission is not None:
            # autobahn refused the handshake after our admission
            self.admission.abandon()

    _linger: Deadline | None = None

    def close_transport(self, abort: bool) -> bool:
        # The closing handshake is over (or autobahn gives up on the
        # connection).  A server closes the TCP connection first, at once
        # (RFC 6455 7.1.1): when its close frame has left and nothing else
        # waits, the FIN goes with it and the connection ends now, not on
        # the reactor's next turn.
        if (not abort or self.wasClean) and close_now(self.transport):
            return True
        # autobahn aborts the TCP connection (RST) as soon as a server's
        # closing handshake completes.  Whatever is still in the write
        # buffer is then lost: our own close frame when both sides closed
        # at once (the client sees 1006), or the last data before it.  A
        # clean close is a graceful one instead, bounded in time.
        if abort and self.wasClean:
            linger = getattr(self, "closeHandshakeTimeout", 0) or TIMER_GRANULARITY
            # armed first: should closing end the connection at once, its
            # connectionLost cancels it
            self._linger = deadlines(self.clock, linger).call(self.transport.abortConnection)
            self.transport.loseConnection()
            return True
        return False

    def connectionLost(self, reason: Failure | None = None) -> None:  # type: ignore[override]
        # the TLS layer may end the connection in the read whose plaintext
        # waits in the batch: that plaintext first
        self.deliver_batch()
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        super().connectionLost(reason)  # type: ignore[arg-type]


def make_factory(
    service: ServiceConfig, reactor: Any, registry: TunnelRegistry, policy: Any = None
) -> WebSocketServerFactory:
    """
    A hardened autobahn factory for one service: masked client frames,
    UTF-8 validation, the service's size limits and timeouts, keepalive,
    no compression.  Origin checking is the admission pipeline's (exact
    allow-list after normalization), so autobahn's own is not used.
    """
    limits = service.limits
    factory = WebSocketServerFactory(reactor=reactor, server="tunnelgw")
    factory.setProtocolOptions(
        versions=[13],
        webStatus=False,
        utf8validateIncoming=True,
        requireMaskedClientFrames=True,
        maskServerFrames=False,
        applyMask=True,
        maxFramePayloadSize=limits.max_frame_size,
        maxMessagePayloadSize=limits.max_message_size,
        failByDrop=False,
        echoCloseCodeReason=False,
        # The request is admitted (login, backend connected) before autobahn
        # reads it, whole: autobahn answers it in the same call, so its
        # opening-handshake timer would be armed and cancelled at once, for
        # nothing.  The client's time to send its head is bounded by the
        # gateway's handshake_timeout, the backend's by connect_timeout.
        openHandshakeTimeout=0,
        closeHandshakeTimeout=autobahn_seconds(limits.close_handshake_timeout),
        tcpNoDelay=True,
        perMessageCompressionAccept=lambda offers: None,
        autoPingInterval=autobahn_seconds(limits.ping_interval),
        autoPingTimeout=autobahn_seconds(limits.ping_timeout),
        autoPingSize=12,
        serveFlashSocketPolicy=False,
        allowedOrigins=["*"],
        allowNullOrigin=True,
        maxConnections=0,
        trustXForwardedFor=0,
    )
    # the options on the service's protocol class (tunnelgw._compat.autobahn)
    options = class_options(factory, TunnelWebSocket)
    options["max_fragments"] = limits.max_fragments
    protocol: type[TunnelWebSocket] = type(f"TunnelWebSocket_{service.name}", (TunnelWebSocket,), options)
    factory.protocol = protocol
    factory.tunnelgw_registry = registry  # type: ignore[attr-defined]
    factory.tunnelgw_policy = policy  # type: ignore[attr-defined]
    return factory


class AdmittedFactory:
    """
    Hands autobahn's resource one protocol, already carrying its admission.
    """

    def __init__(
        self, factory: WebSocketServerFactory, admission: Admission, lease: Lease | None, clock: IReactorTime
    ) -> None:
        self._factory = factory
        self._admission = admission
        self._lease = lease
        self._clock = clock
        self.protocol: TunnelWebSocket | None = None  # the one built
        self.channel_is_producer = False  # see TunnelWebSocket.channel_is_producer

    def buildProtocol(self, addr: Any) -> TunnelWebSocket:
        protocol = self._factory.buildProtocol(addr)
        assert isinstance(protocol, TunnelWebSocket)
        protocol.admission = self._admission
        protocol.lease = self._lease
        protocol.clock = self._clock
        protocol.channel_is_producer = self.channel_is_producer
        self.protocol = protocol
        return protocol
