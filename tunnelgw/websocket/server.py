"""
The client leg: autobahn's WebSocket server protocol, hardened, feeding a
L{Tunnel}.

Admission has already happened when this protocol is built (see
L{tunnelgw.front.site.ServiceResource}): the handshake only answers with the
subprotocol the pipeline chose, and C{onOpen} starts the tunnel.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from types import FunctionType, ModuleType
from typing import Any

import autobahn.twisted.websocket as _autobahn_twisted
import autobahn.websocket.protocol as _autobahn_protocol
from autobahn.twisted.util import peer2str
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from tunnelgw.admission.request import Admission
from tunnelgw.config.model import ServiceConfig
from tunnelgw.limits import Lease
from tunnelgw.tunnel.deadlines import Deadline, deadlines
from tunnelgw.tunnel.flow import close_now
from tunnelgw.tunnel.registry import TunnelRegistry
from tunnelgw.tunnel.relay import Tunnel
from tunnelgw.websocket.leg import NO_SEND_QUEUE, WebSocketLeg

__all__ = ["TunnelWebSocket", "make_factory", "AdmittedFactory", "start_tunnel"]


def start_tunnel(
    admission: Admission,
    client: Any,
    clock: IReactorTime,
    registry: TunnelRegistry,
    policy: Any,
    session_id: str = "",
) -> Tunnel:
    """
    Start the tunnel of an admitted connection whose client leg (a
    WebSocket, or a reverse link) is open.
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
        policy=policy,
        places=admission.places,
    )
    tunnel.start(client)
    return tunnel


class _Lazy:
    """
    C{function(*args, **kwargs)}, computed only if someone turns it into
    text.
    """

    __slots__ = ("_function", "_args", "_kwargs")

    def __init__(self, function: Callable[..., object], *args: object, **kwargs: object) -> None:
        self._function = function
        self._args = args
        self._kwargs = kwargs

    def __str__(self) -> str:
        return str(self._function(*self._args, **self._kwargs))

    __repr__ = __str__


def _lazily(module: ModuleType, name: str) -> None:
    function = getattr(module, name)
    setattr(module, name, functools.partial(_Lazy, function))


# autobahn builds the arguments of its debug log lines whether debug
# logging is on or not: on every new connection it formats its whole
# configuration with pformat (a third of the CPU of a WebSocket handshake)
# and names methods and values (hltype, hlval: inspect and f-strings) a
# dozen times a connection.  Computing them lazily keeps the debug text
# identical when it is logged and costs nothing when it is not.
_lazily(_autobahn_protocol, "pformat")
for _name in ("hltype", "hlval"):
    _lazily(_autobahn_protocol, _name)
    _lazily(_autobahn_twisted, _name)


# What autobahn keeps of the opening handshake (its response, the key) is
# read only by succeedHandshake; a tunnel does not need it for its lifetime.
# (autobahn's copies of the request, kilobytes with a browser's cookies, are
# never made: see TunnelWebSocket.processHandshake.)
_HANDSHAKE_LEFTOVERS = (
    "http_response_data",
    "_wskey",
    # autobahn's blank transport details (see TunnelWebSocket.connectionMade)
    "_transport_details",
)


class TunnelWebSocket(WebSocketLeg, WebSocketServerProtocol):  # type: ignore[misc]
    """
    One admitted WebSocket connection.
    """

    transport: Any  # TCP or TLS transport, untyped in Twisted
    admission: Admission | None
    clock: IReactorTime
    tunnel: Tunnel | None = None
    tcpNoDelay: bool  # an option, on the class make_factory builds

    # -- autobahn hooks (mixedCase: they override autobahn) -------------------

    session_id: str = ""

    def connectionMade(self) -> None:
        # autobahn's, less the transport details it builds first: the
        # process and thread ids (two system calls), the TLS channel binding
        # and peer certificate (at open as well), all for WAMP sessions, read
        # by nothing a tunnel runs.  The blank details autobahn's __init__
        # made stay (and say "not TLS" to its _onOpen).
        self.peer = peer2str(self.transport)
        try:
            self.transport.setTcpNoDelay(self.tcpNoDelay)
        except (AttributeError, OSError):  # as autobahn: a Unix socket has no Nagle
            pass
        self._connectionMade()

    def processHandshake(self) -> None:
        # autobahn's own processHandshake parses the request head and
        # checks it, then asks onConnect.  The head was parsed and checked
        # before it was admitted (check_websocket_upgrade refuses whatever
        # autobahn would), and it is here whole, on either HTTP path: a
        # second parse would find nothing new.  autobahn's succeedHandshake
        # writes the 101 from the key and the offered subprotocols.
        # Extensions are never accepted (no compression), so an offer of
        # one is not even read.
        end = self.data.find(b"\r\n\r\n")
        admission = self.admission
        if end < 0 or admission is None:  # neither happens: see above
            self.failHandshake("the request head was not admitted whole", 500)
            return
        request = admission.request
        self.data = self.data[end + 4 :]  # what followed: frames
        self.websocket_version = 13
        self.websocket_protocols = request.subprotocols
        self.websocket_extensions = []
        key = request.single("Sec-WebSocket-Key")
        assert key is not None, "check_websocket_upgrade lets no upgrade in without a key"
        self._wskey = key
        # The client presents this id (with fresh credentials) to the
        # refresh endpoint to keep the tunnel past its credentials' expiry.
        self.session_id = secrets.token_urlsafe(24)
        self.succeedHandshake((admission.subprotocol, {"X-Tunnel-Session": self.session_id}))

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
        for name in _HANDSHAKE_LEFTOVERS:
            setattr(self, name, None)
        # autobahn's queue of "sync" and chopped writes, which a tunnel never
        # makes: an empty deque is 760 bytes, a tenth of an idle tunnel.
        # WebSocketLeg.sendData puts a real one back should one be made.
        self.send_queue = NO_SEND_QUEUE
        self.tunnel = start_tunnel(
            admission,
            self,
            self.clock,
            self.factory.tunnelgw_registry,
            self.factory.tunnelgw_policy,
            self.session_id,
        )

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

    def _closeConnection(self, abort: bool = False) -> None:
        # The closing handshake is over (or autobahn gives up on the
        # connection).  A server closes the TCP connection first, at once
        # (RFC 6455 7.1.1): when its close frame has left and nothing else
        # waits, the FIN goes with it and the connection ends now, not on
        # the reactor's next turn.
        if (not abort or self.wasClean) and close_now(self.transport):
            return
        # autobahn aborts the TCP connection (RST) as soon as a server's
        # closing handshake completes.  Whatever is still in the write
        # buffer is then lost: our own close frame when both sides closed
        # at once (the client sees 1006), or the last data before it.  A
        # clean close is a graceful one instead, bounded in time.
        if abort and self.wasClean:
            linger = getattr(self, "closeHandshakeTimeout", 0) or _TIMER_GRANULARITY
            # armed first: should closing end the connection at once, its
            # connectionLost cancels it
            self._linger = deadlines(self.clock, linger).call(self.transport.abortConnection)
            self.transport.loseConnection()
            return
        super()._closeConnection(abort)

    def connectionLost(self, reason: Failure | None = None) -> None:  # type: ignore[override]
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        super().connectionLost(reason)  # type: ignore[arg-type]


# autobahn runs its timers through txaio's batched timer, which truncates
# each deadline to a whole second (int(now + delay)): a timer can fire up to
# one second early, a 0.5 s one at once.  Adding that second makes each fire
# between the configured time and one second after it, never before.
_TIMER_GRANULARITY = 1.0


def _autobahn_seconds(seconds: float) -> float:
    return seconds + _TIMER_GRANULARITY if seconds > 0 else 0


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
        closeHandshakeTimeout=_autobahn_seconds(limits.close_handshake_timeout),
        tcpNoDelay=True,
        perMessageCompressionAccept=lambda offers: None,
        autoPingInterval=_autobahn_seconds(limits.ping_interval),
        autoPingTimeout=_autobahn_seconds(limits.ping_timeout),
        autoPingSize=12,
        serveFlashSocketPolicy=False,
        allowedOrigins=["*"],
        allowNullOrigin=True,
        maxConnections=0,
        trustXForwardedFor=0,
    )
    # autobahn copies every option from the factory onto each new protocol
    # instance unless the protocol class already has it: a class per service
    # holding them saves that work and ~30 attributes per tunnel.
    # A function among them (perMessageCompressionAccept) must stay a plain
    # function: as a class attribute it would become a method and get the
    # protocol as an extra argument.
    options = {
        name: staticmethod(value) if isinstance(value, FunctionType) else value
        for name in TunnelWebSocket.CONFIG_ATTRS
        for value in (getattr(factory, name),)
    }
    # With every option on the class, autobahn's copying finds each one set
    # already, and would only read them all once more for a debug line
    # (some eighty calls a connection): there is nothing to copy.
    options["CONFIG_ATTRS"] = ()
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
