"""
A tunnel's closing rules: an adapter's failure, the backend's end (EOF,
reset, a chained gateway's close code), the client's close, the flush of
what one side sent before the other closes, and the end of both.  Mixed
into L{tunnelgw.tunnel.relay.Tunnel}; docs/architecture.md, "Closing
rules", has them as a table.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure

from tunnelgw.errors import CloseCode
from tunnelgw.tunnel.flow import BACKEND_FULL, CLIENT_FULL, FLUSHING, RATE, FlushWatcher
from tunnelgw.tunnel.timers import TIMER_SLOTS, State, TunnelPart

__all__ = ["TunnelClosing"]


class TunnelClosing(TunnelPart):
    # no slots of its own: the tunnel's (mypy's misc ignores below are its
    # complaint that a mixin assigns names its own empty __slots__ lacks)
    __slots__ = ()

    # the tunnel's, as these methods read and set them (besides TunnelPart's)
    peer: str
    subprotocol: Any
    close_code: int | None
    close_reason: str
    bytes_up: int
    bytes_down: int
    peak_up: int
    peak_down: int
    started: float
    via: str
    _client: Any
    _client_gate: Any
    _backend: Any
    _backend_gone: bool
    _client_gone: bool
    _adapter: Any
    _registry: Any
    _places: Any
    _t_linger: Any
    _flush_cork: Any
    # TunnelTimers' and the tunnel's
    _schedule: Any
    _cancel: Any
    _cancel_slot: Any
    buffered: Any

    # -- closing ------------------------------------------------------------

    def fail(self, code: int, reason: str) -> None:
        """
        Close the client with C{code} now, and the backend after what it
        was already given.
        """
        if self._state is not State.OPEN:
            return
        self._state = State.CLOSING
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
        if self._state is State.OPEN:
            self._backend_finished(CloseCode.NORMAL, "backend closed the connection")
        else:
            self._close_backend()

    def backend_lost(self, reason: Failure, code: int | None = None, why: str | None = None) -> None:
        """
        The backend connection is gone.  A message-oriented backend that
        closed with a WebSocket close code passes it (and its reason) on:
        the client gets the code the inner side decided.
        """
        self._backend_gone = True  # type: ignore[misc]
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
        if self._state is not State.OPEN:
            return
        self._state = State.CLOSING
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
        self._client_gone = True  # type: ignore[misc]
        self._cancel("flush")
        self._cancel("idle")
        if self._state is State.OPEN:
            self._state = State.CLOSING
            self._set_close(code if code is not None else CloseCode.NORMAL, reason or "client closed")
            if self._backend is not None and not self._backend_gone:
                if was_clean:
                    # Everything the client sent before its close frame has
                    # been written; shut our write side down once flushed
                    # and let the backend finish.
                    self._flush_cork()
                    self._backend.finish()
                    self._schedule(
                        "linger", self.service.limits.flush_timeout, self._abort_backend, fixed=True
                    )
                else:
                    self._close_backend()
        self._maybe_done()

    def _close_backend(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        if self._backend is not None and not self._backend_gone:
            self._flush_cork()
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
            self.close_code = code  # type: ignore[misc]
            self.close_reason = reason  # type: ignore[misc]

    def _maybe_done(self) -> None:
        if self._state is State.CLOSED or not (self._client_gone and self._backend_gone):
            return
        self._state = State.CLOSED
        for slot in TIMER_SLOTS.values():
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
            transport=self.via,
            principal=self.subject.principal,
            code=self.close_code,
            reason=self.close_reason,
            bytes_up=self.bytes_up,
            bytes_down=self.bytes_down,
            peak_up=self.peak_up,
            peak_down=self.peak_down,
            duration=self.reactor.seconds() - self.started,
        )
