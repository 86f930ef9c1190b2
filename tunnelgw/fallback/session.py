"""
One fallback session: the client leg of a tunnel whose client speaks the
fallback transport (L{tunnelgw.fallback.framing}) instead of WebSocket.

To its tunnel the session is a client leg like a WebSocket: it sends
messages, closes with a code, aborts; and its L{SessionTransport} is what
the tunnel's flow control registers on and pauses.  Underneath, the
messages down wait in an L{Outbox} until the client acknowledges them
(its bytes are the transport's write buffer, bounded by the tunnel's
high-water mark), and go out on whichever down request is current (a
stream or a poll, L{Down}); the messages up come in POSTs, each number
taken once, in order (L{Inbox}).  "Stop reading the client" means: stop
answering its POSTs, which is what slows a client that sends too fast.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from tunnelgw.errors import CloseCode
from tunnelgw.fallback.framing import BINARY, CLOSE, TEXT, Frame, FrameParser, FramingError
from tunnelgw.fallback.queues import Inbox, Outbox
from tunnelgw.logs import Logger

__all__ = ["Down", "FallbackSession", "SessionTransport"]

_CODE = struct.Struct(">H")
ABNORMAL = 1006
"""What a WebSocket reports when its connection ends without a close (RFC 6455 7.1.5)."""


class Down(Protocol):
    """
    The current down request of a session: a stream or a poll.
    """

    def write(self, frame: bytes) -> None: ...

    def finish(self) -> None: ...


class SessionTransport:
    """
    What the tunnel's flow control sees of a session, as of a transport:
    C{bufferSize} is the outbox's high-water mark; a streaming producer is
    paused while the outbox is over it and resumed when the client's
    acknowledgements bring it down; a pull producer is asked for more
    once everything is acknowledged (the flush before a close); pausing
    the transport stops the answers to the client's POSTs.
    """

    disconnecting = False

    def __init__(self, session: FallbackSession) -> None:
        self._session = session
        self.producer: Any = None
        self._streaming = False

    @property
    def bufferSize(self) -> int:  # noqa: N802 (a transport's name)
        return self._session.outbox.high_water

    @bufferSize.setter
    def bufferSize(self, size: int) -> None:  # noqa: N802
        self._session.outbox.high_water = size

    def held_bytes(self) -> int:
        """Bytes sent down and not acknowledged yet."""
        return self._session.outbox.bytes

    def registerProducer(self, producer: Any, streaming: bool) -> None:  # noqa: N802
        self.producer, self._streaming = producer, streaming
        if streaming:
            if self._session.outbox.over:
                producer.pauseProducing()
        else:
            self.emptied()

    def unregisterProducer(self) -> None:  # noqa: N802
        self.producer = None

    def pauseProducing(self) -> None:  # noqa: N802
        self._session.hold_up(True)

    def resumeProducing(self) -> None:  # noqa: N802
        self._session.hold_up(False)

    def stopProducing(self) -> None:  # noqa: N802
        self._session.abort()

    def full(self) -> None:
        if self.producer is not None and self._streaming:
            self.producer.pauseProducing()

    def drained(self) -> None:
        if self.producer is not None and self._streaming:
            self.producer.resumeProducing()

    def emptied(self) -> None:
        if self.producer is not None and not self._streaming and self._session.outbox.bytes == 0:
            self.producer.resumeProducing()

    def getPeer(self) -> Any:  # noqa: N802
        return self._session.peer

    def loseConnection(self) -> None:  # noqa: N802
        self._session.abort()

    abortConnection = loseConnection  # noqa: N815


class FallbackSession:
    """
    One session: see the module docstring.  C{ended} is called once, when
    the session is over (the table forgets it); C{closing} once, when the
    gateway closes it (the table finds it then by path and origin).
    """

    log = Logger()

    def __init__(
        self,
        *,
        session_id: str,
        service: Any,
        origin: str | None,
        binding: bytes,
        peer: Any,
        lease: Any,
        clock: IReactorTime,
        idle_timeout: float,
        ended: Callable[[FallbackSession], None],
        closing: Callable[[FallbackSession], None] | None = None,
    ) -> None:
        self.session_id = session_id
        self.service = service
        self.origin = origin
        self.binding = binding
        """A digest of the credentials the session was opened with (L{tunnelgw.front.fallback})."""
        self.peer = peer
        self.lease = lease
        self.principal: str | None = None
        self.opened_by: Any = None
        """The front's endpoint that opened it, which serves it once closed (a reload may have removed it)."""
        self._clock = clock
        self._idle_timeout = idle_timeout
        self._ended: Callable[[FallbackSession], None] | None = ended
        self._on_closing = closing
        self.transport = SessionTransport(self)
        limits = service.limits
        self.outbox = Outbox(limits.high_water, self.transport.full, self.transport.drained)
        self.inbox = Inbox()
        self._max_payload = limits.max_message_size
        self.tunnel: Any = None
        self.down: Down | None = None
        self._sent = 0  # the last message written to the current down request
        self._held = False
        self._waiting: list[Callable[[], None]] = []
        self.closing = False  # a close was sent down
        self.closed = False  # the client's close came (or the session ended)
        self.over = False
        self._idle: IDelayedCall | None = None
        self._linger: IDelayedCall | None = None
        self.touch()

    # -- the client leg (L{tunnelgw.tunnel.legs.ClientLeg}) -------------------

    def send_message(self, payload: bytes, is_binary: bool) -> None:
        if self.closing or self.over:
            return
        self._send(self.outbox.push(BINARY if is_binary else TEXT, payload))

    def close(self, code: int, reason: str) -> None:
        if self.closing or self.over:
            return
        self.closing = True
        if self._on_closing is not None:
            self._on_closing(self)
        self._send(self.outbox.push(CLOSE, _CODE.pack(code) + reason.encode("utf-8")[:123]))
        if self.closed:
            # the client closed first: this is the echo, and the tunnel knows
            self._linger_then_end()
        else:
            timeout = self.service.limits.close_handshake_timeout or 1.0
            self._linger = self._clock.callLater(timeout, self.abort)

    def abort(self) -> None:
        self._end(False, ABNORMAL, "the fallback session was lost")

    def buffered_input(self) -> int:
        return 0

    # -- requests -----------------------------------------------------------

    def touch(self) -> None:
        """A request of this session came: it is not idle."""
        if self._idle is not None and self._idle.active():
            self._idle.reset(self._idle_timeout)
        elif not self.over:
            self._idle = self._clock.callLater(self._idle_timeout, self._idled)

    def acknowledge(self, seq: int) -> None:
        """The client has every message down up to C{seq}."""
        self.outbox.ack(seq)
        self.transport.emptied()
        if self.closing and self.closed and self.outbox.bytes == 0:
            self._end(True, None, None)

    def attach_down(self, down: Down, ack: int) -> None:
        """
        C{down} is the session's down request from now on: what the client
        has not acknowledged is sent (again) on it.
        """
        previous, self.down = self.down, down
        if previous is not None:
            previous.finish()
        for frame in self.outbox.since(ack):
            down.write(frame)
        self._sent = self.outbox.last
        self.transport.emptied()

    def detach_down(self, down: Down) -> None:
        if self.down is down:
            self.down = None

    def receive(self, body: bytes, answer: Callable[[], None]) -> None:
        """
        A POST's frames: each new message goes to the tunnel, in order;
        C{answer} is called once the client may send more (at once, unless
        the tunnel stopped reading the client).

        @raise FramingError: the body is not frames within the bounds (the
            tunnel is closed as a WebSocket's would be).
        """
        try:
            parser = FrameParser(self._max_payload, len(body))
            frames = parser.feed(body)
            if parser.pending:
                raise FramingError("the body ends inside a frame", CloseCode.PROTOCOL_ERROR)
        except FramingError as e:
            if self.tunnel is not None:
                self.tunnel.fail(e.code, str(e))
            raise
        new = self.inbox.take(frames)
        for frame in new:
            self._deliver(frame)
        # the client's close is answered at once: nothing is read after it
        if new and self._held and not self.closed:
            self._waiting.append(answer)
        else:
            answer()

    def hold_up(self, held: bool) -> None:
        self._held = held
        if not held:
            waiting, self._waiting = self._waiting, []
            for answer in waiting:
                answer()

    # -- inside -------------------------------------------------------------

    def _send(self, frame: bytes) -> None:
        down = self.down
        if down is not None:
            self._sent = self.outbox.last
            down.write(frame)

    def _deliver(self, frame: Frame) -> None:
        tunnel = self.tunnel
        if self.closed or tunnel is None:
            return
        if frame.kind == CLOSE:
            self.closed = True
            code = _CODE.unpack_from(frame.payload)[0] if frame.payload else None
            reason = frame.payload[2:].decode("utf-8")
            if self.closing:
                # the client's answer to ours: the closing handshake is over
                self._cancel_linger()
                tunnel.client_closed(True, code, reason)
                self._end(True, code, reason)
                return
            tunnel.client_closed(True, code, reason)
            # echo it, as a WebSocket server does
            self.close(code if code is not None else CloseCode.NORMAL, "")
            return
        tunnel.client_message(frame.payload, frame.kind == BINARY)

    def _linger_then_end(self) -> None:
        self._cancel_linger()
        timeout = self.service.limits.close_handshake_timeout or 1.0
        self._linger = self._clock.callLater(timeout, self._end, True, None, None)

    def _cancel_linger(self) -> None:
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        self._linger = None

    def _idled(self) -> None:
        self._idle = None
        self.log.info(
            "fallback session of {principal}: no request within {timeout}s",
            event="fallback_timeout",
            conn_id=getattr(self.tunnel, "conn_id", None),
            principal=self.principal,
            timeout=self._idle_timeout,
        )
        self.abort()

    def _end(self, clean: bool, code: int | None, reason: str | None) -> None:
        if self.over:
            return
        self.over = True
        self._cancel_linger()
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self._idle = None
        down, self.down = self.down, None
        if down is not None:
            down.finish()
        self.hold_up(False)
        tunnel, self.tunnel = self.tunnel, None
        if tunnel is not None and not self.closed:
            self.closed = True
            tunnel.client_closed(clean, code, reason)
        lease, self.lease = self.lease, None
        if lease is not None:
            lease.release()
        ended, self._ended = self._ended, None
        if ended is not None:
            ended(self)
