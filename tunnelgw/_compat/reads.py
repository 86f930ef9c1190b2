"""
What a leg's reads do with autobahn's frame parser (see
L{tunnelgw._compat}).

Shortcut C{whole_frames}: L{take_messages}.  autobahn parses what a leg
reads one frame at a time and in two passes (the header, then the
payload), through some twenty method calls per message, and it slices
what is left of the read twice per frame: a read of many small messages
is copied over and over.  Most messages are one frame, whole in the read
that brings them.  L{take_messages} hands each such message at the front
of a read to the leg's C{_onMessage}, as autobahn's message end would,
and leaves the rest of the read to autobahn from the first frame that is
anything else: a control frame, a fragment, a frame not yet whole, one
over a size limit or masked the wrong way, text that is not UTF-8, a
connection no longer open, a compressed or logged connection.  autobahn
then parses that frame from its first byte, as it would have, and
answers it (a pong, a close code) itself.

What autobahn would have done besides, for such a message, and is not
done: its traffic counters (tunnelgw reads none), the C{"message"}
event it fires for observers (a leg registers none; it cost a Deferred
a message) and the per-message hooks of the leg's class (C{onMessageBegin}, C{onMessageFrameBegin}...),
which is why L{whole_frames} first checks that every such hook is
autobahn's own or one its class vouches for (C{whole_frame_hooks}: a
hook that does nothing to a message of one frame).
"""

from __future__ import annotations

from typing import Any

import autobahn.websocket.protocol as _autobahn_protocol

from tunnelgw._compat import enabled
from tunnelgw._compat.payloads import unmask

__all__ = ["HOOKS", "take_messages", "whole_frames"]

_ENABLED = enabled("whole_frames")
_OPEN = _autobahn_protocol.WebSocketProtocol.STATE_OPEN
_TEXT, _BINARY = 0x81, 0x82  # FIN, no RSV bit, opcode 1 or 2

HOOKS = (
    "_dataReceived",
    "consumeData",
    "processData",
    "onFrameBegin",
    "onFrameData",
    "onFrameEnd",
    "_onMessageBegin",
    "onMessageBegin",
    "_onMessageFrameBegin",
    "onMessageFrameBegin",
    "_onMessageFrameData",
    "onMessageFrameData",
    "_onMessageFrameEnd",
    "onMessageFrameEnd",
    "_onMessageFrame",
    "onMessageFrame",
    "_onMessageEnd",
    "onMessageEnd",
)
"""What autobahn calls between a read and C{_onMessage}: the path skipped."""

_VERDICT = "_tunnelgw_whole_frames"  # on each leg class, once asked


def whole_frames(cls: type) -> bool:
    """
    Whether L{take_messages} may serve the legs of C{cls}: the shortcut is
    on and every method of L{HOOKS} is autobahn's or named in the class's
    C{whole_frame_hooks} (C{"Class.method"}).
    """
    known: bool | None = cls.__dict__.get(_VERDICT)
    if known is None:
        vouched: frozenset[str] = getattr(cls, "whole_frame_hooks", frozenset())
        known = _ENABLED and all(
            (method := getattr(cls, name, None)) is not None
            and (
                getattr(method, "__module__", "").startswith("autobahn.")
                or getattr(method, "__qualname__", None) in vouched
            )
            for name in HOOKS
        )
        setattr(cls, _VERDICT, known)
    return known


def _ready(leg: Any) -> bool:
    """Between messages, open, and nothing autobahn does per frame is asked for."""
    return (
        leg.state == _OPEN
        and leg.current_frame is None
        and not leg.inside_message
        and leg._perMessageCompress is None
        and not leg.logFrames
        and not leg.logOctets
        and not leg.trackedTimings
        and not leg.failedByMe
    )


def _whole_frame(data: bytes, at: int, masked: bool) -> tuple[int, int, int] | None:
    """
    The frame at C{at} in C{data} if it is a whole message of one text or
    binary frame, masked as C{masked} says, its length in its shortest
    form (autobahn refuses any other): where its mask (or payload) starts,
    its payload's length and its end; C{None} for any other frame, or one
    not whole.
    """
    if len(data) - at < 2:
        return None
    first, second = data[at], data[at + 1]
    if (first != _TEXT and first != _BINARY) or bool(second & 0x80) is not masked:
        return None
    length, start = second & 0x7F, at + 2
    if length == 126:
        if len(data) - at < 4:
            return None
        length, start = data[at + 2] << 8 | data[at + 3], at + 4
        if length < 126:
            return None
    elif length == 127:
        return None
    end = start + (4 if masked else 0) + length
    return (start, length, end) if end <= len(data) else None


def take_messages(leg: Any, data: bytes) -> bytes:
    """
    Deliver the whole single-frame messages at the front of what autobahn
    holds and C{data}; what is left, from the first frame they do not
    cover, is for autobahn's C{_dataReceived} (autobahn's own buffer is
    then empty).  A frame autobahn began in an earlier read is its to
    end first.  C{leg} is a leg for which L{whole_frames} holds.
    """
    masked = bool(leg.factory.isServer)  # a server reads masked frames only
    at = 0
    if leg.state == _OPEN and leg.current_frame is not None and not leg.data:
        # autobahn began a frame in an earlier read: it ends it, and only
        # it (else the whole of this read would be its, frame by frame),
        # when a message of one whole frame follows (else all is its)
        rest = leg.current_frame.length - leg.current_frame_masker.pointer()
        if rest >= len(data) or _whole_frame(data, rest, masked) is None:
            return data
        leg._dataReceived(data[:rest])
        if leg.discarding:
            return b""
        at = rest
    if not _ready(leg):
        return data[at:] if at else data
    held = leg.data
    if held:
        data, at = held + data[at:], 0
        leg.data = b""
    max_frame, max_message = leg.maxFramePayloadSize, leg.maxMessagePayloadSize
    validate = leg.utf8validateIncoming
    while (frame := _whole_frame(data, at, masked)) is not None:
        start, length, end = frame
        if 0 < max_frame < length or 0 < max_message < length:
            break
        first = data[at]
        if masked:
            payload = data[start + 4 : end]
            if length and leg.applyMask:
                payload = unmask(data[start : start + 4], payload)
        else:
            payload = data[start:end]
        if first == _TEXT and validate:
            validator = leg.utf8validator
            validator.reset()
            valid, whole = validator.validate(payload)[:2]
            if not (valid and whole):
                break
        at = end
        if leg.autoPingTimeoutCall and leg.autoPingRestartOnAnyTraffic:
            leg._cancelAutoPingTimeoutCall()  # as autobahn's frame end
        leg._onMessage(payload, first == _BINARY)
        if not _ready(leg) or leg.discarding:
            break
    return data[at:] if at else data
