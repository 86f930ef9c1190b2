"""
The relay between a client leg (a WebSocket) and a backend leg (a byte
stream), with flow control both ways and the closing rules.  It knows
nothing of HTTP or of any application protocol: adapters translate.

Flow control: from its C{connectionMade} the backend transport is paused,
so nothing is read from it before the WebSocket is open (server-speaks-first
protocols such as RFB lose nothing).  When the tunnel starts, each transport
gets a L{Valve} as its streaming producer: a full buffer on one side stops
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

import enum
import functools
from typing import Any
from typing import Protocol as TypingProtocol

from twisted.internet import defer
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IDelayedCall,
    IHalfCloseableProtocol,
    IHandshakeListener,
    IReactorTime,
    ISSLTransport,
)
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from tunnelgw._deadlines import Deadline, deadlines
from tunnelgw._flow import (
    BACKEND_FULL,
    CLIENT_FULL,
    FLUSHING,
    RATE,
    FlushWatcher,
    Gate,
    Valve,
    half_close_now,
    pending_bytes,
    release_connector,
    set_high_water,
    write_now,
)
from tunnelgw.config.model import ServiceConfig
from tunnelgw.errors import CloseCode
from tunnelgw.interfaces import IAdapter, IAdapterFactory, IAuthorizationPolicy, ITunnel
from tunnelgw.logs import Logger
from tunnelgw.security import Subject

__all__ = ["BackendLeg", "BackendProtocol", "ClientLeg", "Tunnel", "TunnelRegistry", "CloseCode"]


class ClientLeg(TypingProtocol):
    """
    What the tunnel needs of the client side (the WebSocket protocol).
    """

    transport: Any

    def send_message(self, payload: bytes, is_binary: bool) -> None: ...

    def close(self, code: int, reason: str) -> None: ...

    def abort(self) -> None: ...

    def buffered_input(self) -> int: ...


class BackendLeg(TypingProtocol):
    """
    What the tunnel needs of the backend side: a byte stream
    (L{BackendProtocol}) or a message stream (a chained gateway,
    L{tunnelgw.upstream.chain.ChainProtocol}).  C{transport} is the
    connection underneath, for flow control.
    """

    transport: Any

    def attach(self, tunnel: Tunnel) -> None: ...

    def write(self, data: bytes) -> None: ...

    def send_message(self, payload: bytes, is_binary: bool) -> None: ...

    def finish(self) -> None:
        """We send nothing more; the backend may finish (half-close)."""

    def close(self, code: int, reason: str) -> None:
        """Close after what was already sent."""

    def abort(self) -> None: ...


_DONE = Failure(ConnectionDone())

# Twisted reads bufferSize bytes at a time and pauses a transport's producer
# when its write buffer holds more than bufferSize.  A full backend read
# (high_water bytes) reaches the client as one message, framed: up to 14
# bytes more.  With the client's mark at high_water every full read crossed
# it and paused and resumed the backend (epoll changes on every read); so
# the client's mark (and read size) is high_water plus a frame header's room.
# The backend's stays at high_water, so a client message of high_water
# bytes does not pause the client either.
FRAME_HEADER_ROOM = 14
_TIMERS = ("idle", "flush", "linger", "expiry", "revalidate", "rate")
# the slot of each timer, named once rather than on every arm and cancel
_TIMER_SLOTS = {name: f"_t_{name}" for name in _TIMERS}


class ClientRate:
    """
    Two token buckets for what one client sends: messages (refilled at
    C{limits.max_messages_per_second}, holding C{message_burst}) and bytes
    (C{max_bytes_per_second}, holding C{byte_burst}); 0 turns one off.
    A tunnel's own, not an L{tunnelgw.interfaces.ILimitStore}'s: a tunnel
    lives in one process, and this is asked once a message.
    """

    __slots__ = ("_limits", "_when", "_messages", "_bytes")

    def __init__(self, limits: Any, now: float) -> None:
        self._limits = limits
        self._when = now
        self._messages = float(limits.message_burst)
        self._bytes = float(limits.byte_burst)

    def spend(self, now: float, size: int) -> float:
        """
        Count one message of C{size} bytes.

        @return: C{-1} if the messages are over their rate beyond the burst
            (the tunnel closes); otherwise the seconds the client should
            not be read for its bytes to be within their rate (C{0}: none).
        """
        limits = self._limits
        elapsed = now - self._when
        self._when = now
        per_second = limits.max_messages_per_second
        if per_second:
            messages = min(float(limits.message_burst), self._messages + elapsed * per_second) - 1
            if messages < 0:
                return -1
            self._messages = messages
        per_second = limits.max_bytes_per_second
        if per_second:
            available = min(float(limits.byte_burst), self._bytes + elapsed * per_second) - size
            self._bytes = available
            if available < 0:
                return -available / per_second
        return 0.0


class _State(enum.Enum):
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class TunnelRegistry:
    """
    The open tunnels of one gateway, for counts, drain and refresh (by the
    session id given to the client in the upgrade response).
    """

    def __init__(self) -> None:
        self.tunnels: set[Tunnel] = set()
        self.by_session: dict[str, Tunnel] = {}
        self._empty_waiters: list[defer.Deferred[None]] = []

    def when_empty(self) -> defer.Deferred[None]:
        """
        Fires once no tunnel is open (at once if none is).
        """
        if not self.tunnels:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._empty_waiters.append(d)
        return d

    def __len__(self) -> int:
        return len(self.tunnels)

    def add(self, tunnel: Tunnel) -> None:
        self.tunnels.add(tunnel)
        if tunnel.session_id:
            self.by_session[tunnel.session_id] = tunnel

    def discard(self, tunnel: Tunnel) -> None:
        self.tunnels.discard(tunnel)
        self.by_session.pop(tunnel.session_id, None)
        if not self.tunnels:
            waiters, self._empty_waiters = self._empty_waiters, []
            for d in waiters:
                d.callback(None)


def _is_tls(transport: Any) -> bool:
    return bool(ISSLTransport.providedBy(transport))


@implementer(IHalfCloseableProtocol, IHandshakeListener)
class BackendProtocol(Protocol):
    """
    The backend leg: a TCP (or TLS, or UNIX) connection to the service.

    It holds what happens until a tunnel attaches: what the service sends
    first (one read: it stops reading then), its end.  A tunnel usually
    attaches in the very reactor turn the connection is made, before
    anything can be read; pausing the transport at once would cost two
    epoll calls per connection for nothing.
    """

    transport: Any  # an ITCPTransport (or TLS/UNIX); untyped in Twisted

    def __init__(self) -> None:
        self.tunnel: Tunnel | None = None
        self.lost: Failure | None = None
        self.eof = False
        self._early: list[bytes] | None = None

    # -- TLS ----------------------------------------------------------------

    # class defaults: most backends are plain TCP, and a tunnel is kept small
    secure = False
    """The TLS handshake is done and the server verified."""
    _secured: defer.Deferred[BackendProtocol] | None = None

    def secured(self) -> defer.Deferred[BackendProtocol]:
        """
        Fires with this protocol once the TLS handshake under it is done and
        the server's certificate and name verified; fails with why if the
        connection is lost first (a wrong CA, a wrong name).  Cancelling it
        aborts the connection.
        """
        if self.secure:
            return defer.succeed(self)
        if self.lost is not None:
            return defer.fail(self.lost)
        self._secured = defer.Deferred(lambda d: self.transport.abortConnection())
        return self._secured

    def handshakeCompleted(self) -> None:
        # Twisted reports the handshake done even when the verification of
        # the server's name, run during it, has just failed and aborted the
        # connection (its connectionLost, with the reason, follows).
        if self.transport.disconnecting:
            return
        self.secure = True
        waiting, self._secured = self._secured, None
        if waiting is not None:
            waiting.callback(self)

    def connectionMade(self) -> None:
        # Interactive protocols (VNC input, STOMP, XMPP) must not wait on
        # Nagle; the client side is set the same way by autobahn.
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)

    def attach(self, tunnel: Tunnel) -> None:
        self.tunnel = tunnel
        early, self._early = self._early, None
        for data in early or ():
            tunnel.backend_data(data)
        if self.lost is not None:
            tunnel.backend_lost(self.lost)
        elif self.eof:
            tunnel.backend_eof()

    def dataReceived(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.backend_data(data)
            return
        # the service spoke before the tunnel attached: keep it, read no more
        if self._early is None:
            self._early = []
        self._early.append(data)
        self.transport.pauseProducing()

    # -- BackendLeg ------------------------------------------------------------

    def write(self, data: bytes) -> None:
        write_now(self.transport, data)

    def send_message(self, payload: bytes, is_binary: bool) -> None:
        raise TypeError("a byte-stream backend takes bytes, not messages")

    def finish(self) -> None:
        if _is_tls(self.transport):
            # TLS's half-close is its close_notify (the server's data is
            # still read until its own); a TCP half-close under TLS would
            # cut it short, and Twisted's TLS layer then ends the
            # connection while it is still reading it ('NoneType' object
            # has no attribute 'bio_read', logged on every clean close).
            # The TLS layer sends it only once no producer is registered.
            self.transport.unregisterProducer()
            self.transport.loseConnection()
            return
        half_close_now(self.transport)

    def close(self, code: int, reason: str) -> None:
        self.transport.loseConnection()

    def abort(self) -> None:
        self.transport.abortConnection()

    def readConnectionLost(self) -> None:
        self.eof = True
        if self.tunnel is not None:
            self.tunnel.backend_eof()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = _DONE) -> None:
        self.lost = reason
        waiting, self._secured = self._secured, None
        if waiting is not None:
            waiting.errback(reason)
        release_connector(self.transport)
        if self.tunnel is not None:
            self.tunnel.backend_lost(reason)


@implementer(ITunnel)
class Tunnel:
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
        self.policy = policy
        self._client: ClientLeg | None = None
        self._adapter: IAdapter | None = None
        self._state = _State.OPEN
        self._client_gone = False
        self._backend_gone = backend is None
        self._client_gate: Gate | None = None
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
        self._backend.write(data)
        self._account_up()

    def send_backend_message(self, payload: bytes, is_binary: bool) -> None:
        if self._backend is None or self._backend_gone:
            return
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

    # -- closing ------------------------------------------------------------

    def fail(self, code: int, reason: str) -> None:
        """
        Close the client with C{code} now, and the backend after what it
        was already given.
        """
        if self._state is not _State.OPEN:
            return
        self._state = _State.CLOSING
        self._set_close(code, reason)
        self.log.info(
            "tunnel {conn_id} failed: {code} {reason}",
            event="tunnel_fail",
            conn_id=self.conn_id,
            code=code,
            reason=reason,
        )
        if self._client is not None:
            self._client.close(code, reason)
        self._close_backend(code, reason)

    def backend_eof(self) -> None:
        if self._state is _State.OPEN:
            self._backend_finished(CloseCode.NORMAL, "backend closed the connection")
        else:
            self._close_backend()

    def backend_lost(self, reason: Failure, code: int | None = None, why: str | None = None) -> None:
        """
        The backend connection is gone.  A message-oriented backend that
        closed with a WebSocket close code passes it (and its reason) on:
        the client gets the code the inner side decided.
        """
        self._backend_gone = True
        self._cancel("linger")
        if self._client_gate is not None and not self._client_gone:
            # A backend that is gone throttles nothing: if it had paused the
            # client (its buffer was full, or TLS held writes back), the
            # client must be read again (once nothing else holds it), or its
            # close frame would stay unread and closing would reset the
            # connection.
            self._client_gate.release(BACKEND_FULL)
        if code is not None:
            self._backend_finished(code, why or "backend closed the connection")
        elif reason.check(ConnectionDone):
            self._backend_finished(CloseCode.NORMAL, "backend closed the connection")
        else:
            self._backend_finished(
                CloseCode.INTERNAL_ERROR, f"backend connection lost: {reason.getErrorMessage()}"
            )
        self._maybe_done()

    def _backend_finished(self, code: int, reason: str) -> None:
        if self._state is not _State.OPEN:
            return
        self._state = _State.CLOSING
        self._set_close(code, reason)
        self._close_backend(code, reason)
        client = self._client
        if client is None or self._client_gone:
            return
        # Everything the backend sent is in the client transport's buffer:
        # let it drain before the close frame starts the close handshake
        # timer, so a slow reader gets every byte.  The client is not read
        # meanwhile (what it would send now is dropped, and its pings would
        # be answered into the buffer that is draining); it is read again
        # with the close frame, for the client's own.
        assert self._client_gate is not None
        self._client_gate.hold(FLUSHING)
        client.transport.unregisterProducer()
        self._schedule("flush", self.service.limits.flush_timeout, self._flush_expired, fixed=True)
        FlushWatcher(client.transport, lambda: self._flushed(code, reason)).start()

    def _flushed(self, code: int, reason: str) -> None:
        self._cancel("flush")
        if self._client is not None and not self._client_gone:
            self._client.close(code, reason)
            # the buffer is empty and no producer is registered any more:
            # nothing holds the client's reading but the flush
            assert self._client_gate is not None
            self._client_gate.release(FLUSHING | CLIENT_FULL | BACKEND_FULL | RATE)

    def _flush_expired(self) -> None:
        self.log.warn(
            "tunnel {conn_id}: client did not read the last {pending} bytes within {timeout}s; aborting",
            event="tunnel_flush_timeout",
            conn_id=self.conn_id,
            pending=self.buffered(),
            timeout=self.service.limits.flush_timeout,
        )
        if self._client is not None and not self._client_gone:
            self._client.abort()

    def client_closed(self, was_clean: bool, code: int | None, reason: str | None) -> None:
        """
        The WebSocket is closed (by either side, cleanly or not).
        """
        self._client_gone = True
        self._cancel("flush")
        self._cancel("idle")
        if self._state is _State.OPEN:
            self._state = _State.CLOSING
            self._set_close(code if code is not None else CloseCode.NORMAL, reason or "client closed")
            if self._backend is not None and not self._backend_gone:
                if was_clean:
                    # Everything the client sent before its close frame has
                    # been written; shut our write side down once flushed
                    # and let the backend finish.
                    self._backend.finish()
                    self._schedule(
                        "linger", self.service.limits.flush_timeout, self._abort_backend, fixed=True
                    )
                else:
                    self._close_backend()
        self._maybe_done()

    def _close_backend(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        if self._backend is not None and not self._backend_gone:
            self._backend.close(code, reason)
            # Closing a connection whose write side is already shut (after
            # a half-close) ends it at once, and the tunnel with it; if it
            # does not, the linger the half-close armed still bounds it.
            if self._t_linger is None:
                self._schedule("linger", self.service.limits.flush_timeout, self._abort_backend, fixed=True)

    def _abort_backend(self) -> None:
        if self._backend is not None and not self._backend_gone:
            self._backend.abort()

    def _set_close(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code = code
            self.close_reason = reason

    def _maybe_done(self) -> None:
        if self._state is _State.CLOSED or not (self._client_gone and self._backend_gone):
            return
        self._state = _State.CLOSED
        for slot in _TIMER_SLOTS.values():
            self._cancel_slot(slot)
        self._registry.discard(self)
        # Both legs are gone and nothing reaches the adapter any more: the
        # references to them go, so that the tunnel, its legs and its
        # adapter (which all refer to each other) are freed by reference
        # counting, not left as cycles for the garbage collector.
        self._client = None
        self._client_gate = None
        self._backend = None
        self._adapter = None
        places, self._places = self._places, None
        if places is not None:
            places.release()
        self.subject.logout()
        self.log.info(
            "tunnel {conn_id} closed: {peer} -> {service} code={code} ({reason});"
            " up={bytes_up} down={bytes_down} bytes in {duration:.3f}s",
            event="tunnel_close",
            conn_id=self.conn_id,
            peer=self.peer,
            service=self.service.name,
            subprotocol=self.subprotocol,
            principal=self.subject.principal,
            code=self.close_code,
            reason=self.close_reason,
            bytes_up=self.bytes_up,
            bytes_down=self.bytes_down,
            peak_up=self.peak_up,
            peak_down=self.peak_down,
            duration=self.reactor.seconds() - self.started,
        )

    def start_backend_tls(self, creator: Any) -> None:
        if self._backend is None or self._backend_gone:
            return
        transport = self._backend.transport
        transport.startTLS(creator)
        set_high_water(transport, self.service.limits.high_water)

    # -- authorization ---------------------------------------------------------

    def permits(self, action: str, resource: str) -> bool:
        allowed = self.policy is not None and self.policy.permits(
            self.subject, self.service.name, action, resource
        )
        if not allowed:
            self.log.info(
                "tunnel {conn_id}: {principal} may not {action} {resource}",
                event="authorization",
                decision="deny",
                conn_id=self.conn_id,
                principal=self.subject.principal,
                service=self.service.name,
                action=action,
                resource=resource,
            )
        return allowed

    # -- credentials ----------------------------------------------------------

    def refresh(self, subject: Subject) -> None:
        """
        The client proved its credentials again (same user): the tunnel
        now lives by the new subject's expiry and login session.
        """
        if self._state is not _State.OPEN:
            subject.logout()  # nothing will end this login but us
            return
        old = self.subject.session
        self.subject = subject
        if old is not None and old is not subject.session:
            old.logout()
        self._schedule_expiry()
        self.log.info(
            "tunnel {conn_id} refreshed by {principal}; expires {expires}",
            event="tunnel_refresh",
            conn_id=self.conn_id,
            principal=subject.principal,
            expires=subject.expires,
        )

    def _schedule_expiry(self) -> None:
        expires = self.subject.expires
        if expires is None:
            self._cancel("expiry")
        else:
            self._schedule("expiry", max(0.0, expires - self.reactor.seconds()), self._expired)

    def _expired(self) -> None:
        self.fail(CloseCode.POLICY_VIOLATION, "credentials expired")

    def _revalidate(self) -> None:
        session = self.subject.session
        assert session is not None
        d = session.revalidate(self.subject)

        def checked(valid: bool) -> None:
            if self._state is not _State.OPEN:
                return
            if valid:
                self._schedule("revalidate", session.revalidate_interval, self._revalidate)
            else:
                self.log.info(
                    "tunnel {conn_id}: credentials of {principal} revoked",
                    event="tunnel_revoked",
                    conn_id=self.conn_id,
                    principal=self.subject.principal,
                )
                self.fail(CloseCode.POLICY_VIOLATION, "credentials revoked")

        d.addCallback(checked)

    # -- timers ---------------------------------------------------------------

    def _check_idle(self) -> None:
        timeout = self.service.limits.idle_timeout
        idle = self.reactor.seconds() - self._last_activity
        if idle >= timeout:
            self.fail(CloseCode.GOING_AWAY, f"idle for {timeout:g}s")
        else:
            self._schedule("idle", timeout - idle, self._check_idle)

    def _schedule(self, name: str, delay: float, f: Any, fixed: bool = False) -> None:
        """
        Arm timer C{name}; C{fixed}: C{delay} is a configured one (shared
        L{deadlines}), not computed.
        """
        slot = _TIMER_SLOTS[name]
        self._cancel_slot(slot)
        if self._state is _State.CLOSED:
            # nothing is left to time out; a timer would keep the finished
            # tunnel (and all it refers to) alive until it fired
            return
        fire = functools.partial(self._fire, slot, f)
        call = deadlines(self.reactor, delay).call(fire) if fixed else self.reactor.callLater(delay, fire)
        setattr(self, slot, call)

    def _fire(self, slot: str, f: Any) -> None:
        setattr(self, slot, None)
        f()

    def _cancel(self, name: str) -> None:
        self._cancel_slot(_TIMER_SLOTS[name])

    def _cancel_slot(self, slot: str) -> None:
        call = getattr(self, slot)
        if call is not None:
            setattr(self, slot, None)
            if call.active():
                call.cancel()
