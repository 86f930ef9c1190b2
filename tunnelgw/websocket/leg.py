"""
What every autobahn protocol that serves as a tunnel leg does the same way:
send a message, close with any sendable RFC 6455 code, abort, report the
unparsed input autobahn holds, and give back its connection's lease when
the connection is lost.  Mixed into the client WebSocket
(L{tunnelgw.websocket.server.TunnelWebSocket}), the gateway links
(L{tunnelgw.upstream.chain}, L{tunnelgw.upstream.links}).
"""

from __future__ import annotations

from typing import Any

from autobahn.util import encode_truncate
from twisted.internet import defer

from tunnelgw._compat.autobahn import NO_SEND_QUEUE, LegInternals
from tunnelgw.tunnel.flow import release_connector, write_now

__all__ = ["DEFAULT_MAX_FRAGMENTS", "NO_SEND_QUEUE", "WebSocketLeg"]

DEFAULT_MAX_FRAGMENTS = 1024
"""As C{limits.max_fragments}; for the links between gateways too."""

# the codes an endpoint may put in a close frame (RFC 6455 7.4.1); 1005,
# 1006 and 1015 only describe a close that had none
_SENDABLE = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})


class WebSocketLeg(LegInternals):
    lease: Any = None
    """The connection's L{tunnelgw.limits.Lease}, if it counts against the caps."""
    # autobahn's, as this mixin reads them
    state: Any
    STATE_OPEN: Any
    is_closed: Any
    transport: Any
    send_queue: Any
    logOctets: bool
    failedByMe: bool
    message_data: Any
    message_is_binary: bool
    data: bytes

    def connectionLost(self, reason: Any = None) -> None:
        try:
            super().connectionLost(reason)  # type: ignore[misc]
        finally:
            release_connector(self.transport)  # a link or chain leg dialled out
            lease, self.lease = self.lease, None
            if lease is not None:
                lease.release()
            # autobahn resolves its is_closed Deferred with the protocol
            # itself, a cycle that only the garbage collector would free;
            # whoever waited on it has been called by now.
            if isinstance(getattr(self, "is_closed", None), defer.Deferred):
                self.is_closed = defer.succeed(None)

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        # Not chopping, autobahn's sendData is transport.write plus a debug
        # line whose arguments it formats whether debug is on or not (and
        # traffic counters, which tunnelgw does not read); here the bytes go
        # out at once (write_now) when nothing waits: the 101 and the close
        # frames as much as the messages.
        if not (sync or chopsize or self.send_queue or self.logOctets):
            write_now(self.transport, data)
            return
        self.send_queue_for_use()
        super().sendData(data, sync, chopsize)  # type: ignore[misc]

    max_fragments = DEFAULT_MAX_FRAGMENTS
    """Frames one message may come in (at least one); one more closes with 1009."""
    _fragments = 0
    # a message of one frame passes both (max_fragments is at least 1)
    whole_frame_hooks = LegInternals.whole_frame_hooks | {
        "WebSocketLeg.onMessageBegin",
        "WebSocketLeg.onMessageFrameBegin",
    }

    def onMessageBegin(self, isBinary: bool) -> None:
        self._fragments = 0
        super().onMessageBegin(isBinary)  # type: ignore[misc]

    def onMessageFrameBegin(self, length: int) -> None:
        # A message in a million 1-byte frames cost 17 s of CPU (autobahn
        # works per frame) while every other tunnel waited: the frames of
        # one message are bounded as its size is, and closed the same way.
        fragments = self._fragments = self._fragments + 1
        if fragments > self.max_fragments and not self.failedByMe:
            self.fail_too_big(
                fragments,
                self.max_fragments,
                f"received a WebSocket message in more than {self.max_fragments} frames",
            )
            return
        super().onMessageFrameBegin(length)  # type: ignore[misc]

    def send_message(self, payload: bytes, is_binary: bool) -> None:
        if not self.send_whole(payload, is_binary):
            self.sendMessage(payload, is_binary)  # type: ignore[attr-defined]

    def close(self, code: int, reason: str) -> None:
        """
        Start the closing handshake with C{code} (autobahn's C{sendClose}
        accepts only 1000 and 3000-4999); a code no frame may carry becomes
        1000.
        """
        if self.state == self.STATE_OPEN:
            code = code if code in _SENDABLE or 3000 <= code <= 4999 else 1000
            reason_bytes = encode_truncate(reason, 123)
            self.sendCloseFrame(code=code, reasonUtf8=reason_bytes, isReply=False)  # type: ignore[attr-defined]

    def abort(self) -> None:
        self.dropConnection(abort=True)  # type: ignore[attr-defined]

    def buffered_input(self) -> int:
        data = getattr(self, "data", b"")
        return len(data) if isinstance(data, (bytes, bytearray)) else 0
