"""
The relay between a client leg (a WebSocket) and a backend leg (a byte
stream, or a chained gateway), with flow control both ways, the closing
rules and the tunnel's timers.  It knows nothing of HTTP or of any
application protocol: adapters translate.

Flow control: what the backend sends before the tunnel attaches is held
by its leg, one read, and the backend is not read further until then
(L{tunnelgw.tunnel.legs.BackendProtocol}): server-speaks-first protocols
such as RFB lose nothing.  When the tunnel starts, each transport gets a
L{Valve} as its streaming producer: a full buffer on one side stops
reading on the other (and a full client buffer stops reading the client
too: what it sends can be answered into that buffer), and a lost
connection on one side does not close the other behind the tunnel's back.
Each side's reading is a L{Gate}, resumed only when nothing holds it.

Closing rules:
  - backend EOF: everything already received is flushed to the client, then
    the WebSocket closes with 1000;
  - backend reset or error: the same flush, then 1011;
  - client close: everything received before it is written to the backend,
    whose write side is then shut down; the backend is given
    C{limits.flush_timeout} to finish, then aborted;
  - an adapter's C{fail(code, reason)}: close with that code at once.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorTime,
)
from zope.interface import implementer

from tunnelgw.config.model import ServiceConfig
from tunnelgw.errors import CloseCode
from tunnelgw.interfaces import IAdapter, IAdapterFactory, IAuthorizationPolicy, ITunnel
from tunnelgw.logs import Logger
from tunnelgw.security import Subject
from tunnelgw.tunnel.closing import TunnelClosing
from tunnelgw.tunnel.deadlines import Deadline
from tunnelgw.tunnel.flow import (
    BACKEND_FULL,
    CLIENT_FULL,
    RATE,
    Gate,
    Valve,
    pending_bytes,
    set_high_water,
)
from tunnelgw.tunnel.legs import BackendLeg, ClientLeg
from tunnelgw.tunnel.rates import ClientRate
from tunnelgw.tunnel.registry import TunnelRegistry
from tunnelgw.tunnel.session import TunnelSession
from tunnelgw.tunnel.timers import State as _State
from tunnelgw.tunnel.timers import TunnelTimers

__all__ = ["FRAME_HEADER_ROOM", "Tunnel"]


# Twisted reads bufferSize bytes at a time and pauses a transport's producer
# when its write buffer holds more than bufferSize.  A full backend read
# (high_water bytes) reaches the client as one message, framed: up to 14
# bytes more.  With the client's mark at high_water every full read crossed
# it and paused and resumed the backend (epoll changes on every read); so
# the client's mark (and read size) is high_water plus a frame header's room.
# The backend's stays at high_water, so a client message of high_water
# bytes does not pause the client either.
FRAME_HEADER_ROOM = 14


@implementer(ITunnel)
class Tunnel(TunnelClosing, TunnelTimers, TunnelSession):
    """
    One tunnel: a client leg, an optional backend leg and an adapter.
    """

    # ten thousand idle tunnels: a slot each instead of a dict each
    __slots__ = (
        "reactor",
        "service",
        "subprotocol",
        "conn_id",
        "peer",
        "subject",
        "session_id",
        "origin",
        "via",
        "policy",
        "bytes_up",
        "bytes_down",
        "peak_up",
        "peak_down",
        "started",
        "close_code",
        "close_reason",
        "_adapter_factory",
        "_backend",
        "_registry",
        "_client",
        "_adapter",
        "_state",
        "_client_gone",
        "_backend_gone",
        "_client_gate",
        "_t_idle",
        "_t_flush",
        "_t_linger",
        "_t_expiry",
        "_t_revalidate",
        "_t_rate",
        "_last_activity",
        "_places",
        "_rate",
        "_corked",
        "__weakref__",
    )
    log = Logger()

    def __init__(
        self,
        *,
        reactor: IReactorTime,
        service: ServiceConfig,
        subprotocol: str | None,
        conn_id: str,
        peer: str,
        subject: Subject,
        adapter_factory: IAdapterFactory,
        backend: BackendLeg | None,
        registry: TunnelRegistry,
        session_id: str = "",
        policy: IAuthorizationPolicy | None = None,
        places: Any = None,
        origin: str | None = None,
        via: str = "websocket",
    ) -> None:
        self.reactor = reactor
        self.service = service
        self.subprotocol = subprotocol
        self.conn_id = conn_id
        self.peer = peer
        self.subject = subject
        self._adapter_factory = adapter_factory
        self._backend = backend
        self._registry = registry
        self.session_id = session_id
        self.origin = origin
        """The C{Origin} the client sent (normalized), C{None} without one: re-judged on reload."""
        self.via = via
        """The client's transport: C{"websocket"} or C{"fallback"}."""
        self.policy = policy
        self._client: ClientLeg | None = None
        self._adapter: IAdapter | None = None
        self._state = _State.OPEN
        self._client_gone = False
        self._backend_gone = backend is None
        self._client_gate: Gate | None = None
        self._corked: list[bytes] | None = None
        self._t_idle: IDelayedCall | Deadline | None = None
        self._t_flush: IDelayedCall | Deadline | None = None
        self._t_linger: IDelayedCall | Deadline | None = None
        self._t_expiry: IDelayedCall | Deadline | None = None
        self._t_revalidate: IDelayedCall | Deadline | None = None
        self._t_rate: IDelayedCall | Deadline | None = None
        self.bytes_up = 0
        self.bytes_down = 0
        self.peak_up = 0
        self.peak_down = 0
        self.started = reactor.seconds()
        self._last_activity = self.started
        self.close_code: int | None = None
        self.close_reason = ""
        self._places = places
        """What this tunnel holds against its user's caps (L{tunnelgw.limits.Places})."""
        limits = service.limits
        self._rate: ClientRate | None = (
            ClientRate(limits, self.started)
            if limits.max_messages_per_second or limits.max_bytes_per_second
            else None
        )

    @property
    def last_activity(self) -> float:
        """When a message last passed, either way (the reactor's seconds)."""
        return self._last_activity

    # -- life cycle -------------------------------------------------------

    def start(self, client: ClientLeg) -> None:
        """
        The WebSocket is open: wire flow control and start relaying.
        """
        self._client = client
        self._registry.add(self)
        self._adapter = self._adapter_factory.build(self)
        limits = self.service.limits
        client_transport = client.transport
        set_high_water(client_transport, limits.high_water + FRAME_HEADER_ROOM)
        # A client whose write buffer is full stops being read as well as the
        # backend: what it sends can add to that buffer (the pong of every
        # ping, the echo, an adapter's protocol errors), and a client that
        # sends and never reads would otherwise grow it without bound.
        self._client_gate = client_gate = Gate(client_transport)
        if self._backend is not None:
            backend_transport = self._backend.transport
            set_high_water(backend_transport, limits.high_water)
            client_transport.registerProducer(Valve(CLIENT_FULL, Gate(backend_transport), client_gate), True)
            backend_transport.registerProducer(Valve(BACKEND_FULL, client_gate), True)
            backend_transport.resumeProducing()
        else:
            client_transport.registerProducer(Valve(CLIENT_FULL, client_gate), True)
        if limits.idle_timeout > 0:
            self._schedule("idle", limits.idle_timeout, self._check_idle, fixed=True)
        self._schedule_expiry()
        session = self.subject.session
        if session is not None and session.revalidate_interval > 0:
            self._schedule("revalidate", session.revalidate_interval, self._revalidate)
        if self._backend is not None:
            self._backend.attach(self)

    # -- data ---------------------------------------------------------------

    def client_message(self, payload: bytes, is_binary: bool) -> None:
        if self._state is not _State.OPEN:
            return
        now = self._last_activity = self.reactor.seconds()
        self.bytes_up += len(payload)
        rate = self._rate
        if rate is not None:
            verdict = rate.spend(now, len(payload))
            if verdict < 0:
                self.fail(CloseCode.POLICY_VIOLATION, "rate: too many messages")
                return
            if verdict > 0:
                self._slow_client(verdict)
        assert self._adapter is not None
        self._adapter.client_message(payload, is_binary)

    def _slow_client(self, delay: float) -> None:
        """
        The client sends faster than its byte rate: it is not read for
        C{delay} seconds (TCP holds back what it sends; nothing is dropped).
        """
        gate = self._client_gate
        if gate is None:
            return
        gate.hold(RATE)
        self._schedule("rate", delay, self._rate_refilled)  # the whole deficit, this message's included

    def _rate_refilled(self) -> None:
        if self._client_gate is not None:
            self._client_gate.release(RATE)

    def backend_data(self, data: bytes) -> None:
        if self._state is not _State.OPEN:
            return
        self._last_activity = self.reactor.seconds()
        self.bytes_down += len(data)
        assert self._adapter is not None
        self._adapter.backend_data(data)

    def send_client(self, payload: bytes, is_binary: bool) -> None:
        if self._client_gone or self._client is None:
            return
        if self._backend is None:
            self.bytes_down += len(payload)
        self._client.send_message(payload, is_binary)
        down = pending_bytes(self._client.transport)
        if down > self.peak_down:
            self.peak_down = down

    def backend_message(self, payload: bytes, is_binary: bool) -> None:
        """
        A message from a message-oriented backend (a chained gateway): it
        reaches the client as it is, message for message.
        """
        if self._state is not _State.OPEN:
            return
        self._last_activity = self.reactor.seconds()
        self.bytes_down += len(payload)
        self.send_client(payload, is_binary)

    def send_backend(self, data: bytes) -> None:
        if self._backend is None or self._backend_gone:
            return
        corked = self._corked
        if corked is not None:
            corked.append(data)
            return
        self._backend.write(data)
        self._account_up()

    # -- one write to the backend per read of the client ---------------------

    def cork(self) -> None:
        """
        The client's leg is reading: what its messages send the backend
        waits until L{uncork}, then goes in one write (one system call for
        every message of the read rather than one each; websockify writes
        the same way).
        """
        self._corked = []

    def uncork(self) -> None:
        corked, self._corked = self._corked, None
        if corked and self._backend is not None and not self._backend_gone:
            self._backend.write(corked[0] if len(corked) == 1 else b"".join(corked))
            self._account_up()

    def _flush_cork(self) -> None:
        """Before anything else reaches the backend (a close, TLS): what waits, in order."""
        if self._corked:
            self.uncork()
            self._corked = []

    def send_backend_message(self, payload: bytes, is_binary: bool) -> None:
        if self._backend is None or self._backend_gone:
            return
        self._flush_cork()
        self._backend.send_message(payload, is_binary)
        self._account_up()

    def _account_up(self) -> None:
        assert self._backend is not None and self._client is not None
        up = pending_bytes(self._backend.transport) + self._client.buffered_input()
        if up > self.peak_up:
            self.peak_up = up

    def buffered(self) -> int:
        """
        Bytes this tunnel holds in memory right now, both ways.  The peaks
        per direction are kept in C{peak_up} (backend write buffer plus
        unparsed client input) and C{peak_down} (client write buffer).
        """
        total = 0
        if self._client is not None:
            total += pending_bytes(self._client.transport) + self._client.buffered_input()
        if self._backend is not None and not self._backend_gone:
            total += pending_bytes(self._backend.transport)
        return total

    def start_backend_tls(self, creator: Any) -> None:
        if self._backend is None or self._backend_gone:
            return
        self._flush_cork()
        transport = self._backend.transport
        transport.startTLS(creator)
        set_high_water(transport, self.service.limits.high_water)
