"""
The fallback's wire format, the same both ways: frames of a 13-byte
header (kind, sequence number, payload length; big-endian) and a payload.

  kind  0 PAD        padding, ignored (sent first down, so buffering
                     proxies flush the response's start)
        1 TEXT       a text message (UTF-8)
        2 BINARY     a binary message
        8 CLOSE      a close: a 2-byte code, then a UTF-8 reason
        9 HEARTBEAT  nothing: the stream is alive
       10 ACK        nothing: its sequence number acknowledges every
                     message up to it (the other direction's)

Messages and closes are numbered from 1 in each direction, so that a
resumed stream or a repeated POST delivers each exactly once, in order
(L{tunnelgw.fallback.queues}); pads, heartbeats and acks carry 0 or the
number they acknowledge.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "ACK",
    "BINARY",
    "CLOSE",
    "Frame",
    "FrameParser",
    "FramingError",
    "HEADER",
    "HEARTBEAT",
    "PAD",
    "TEXT",
    "encode",
]

PAD, TEXT, BINARY, CLOSE, HEARTBEAT, ACK = 0, 1, 2, 8, 9, 10
KINDS = frozenset({PAD, TEXT, BINARY, CLOSE, HEARTBEAT, ACK})
MESSAGES = frozenset({TEXT, BINARY, CLOSE})
"""The kinds that are numbered and delivered."""
_HEADER = struct.Struct(">BQI")
HEADER = _HEADER.size


class FramingError(Exception):
    """
    Bytes that are not frames of this format, or over its bounds; C{code}
    is the close code a WebSocket would get for the same fault (1009 too
    big, 1007 not UTF-8, 1002 otherwise).
    """

    def __init__(self, message: str, code: int = 1002) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Frame:
    kind: int
    seq: int
    payload: bytes = b""


def encode(kind: int, seq: int, payload: bytes = b"") -> bytes:
    return _HEADER.pack(kind, seq, len(payload)) + payload


class FrameParser:
    """
    Frames from bytes cut anywhere, bounded: a payload over C{max_payload}
    bytes, an unknown kind, a message that is not what its kind says (text
    that is not UTF-8, a close without a code) is a L{FramingError}; at
    most C{max_buffered} bytes of an unfinished frame are held.
    """

    def __init__(self, max_payload: int, max_buffered: int | None = None) -> None:
        self.max_payload = max_payload
        self.max_buffered = max_buffered if max_buffered is not None else max_payload + HEADER
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        buffer = self._buffer
        buffer += data
        frames: list[Frame] = []
        while len(buffer) >= HEADER:
            kind, seq, length = _HEADER.unpack_from(buffer)
            if kind not in KINDS:
                raise FramingError(f"unknown frame kind {kind}")
            if length > self.max_payload:
                raise FramingError(f"a frame of {length} bytes, over {self.max_payload}", 1009)
            if len(buffer) < HEADER + length:
                break
            payload = bytes(buffer[HEADER : HEADER + length])
            del buffer[: HEADER + length]
            _check(kind, payload)
            frames.append(Frame(kind, seq, payload))
        if len(buffer) > self.max_buffered:
            raise FramingError("too much of an unfinished frame", 1009)
        return frames

    @property
    def pending(self) -> int:
        """Bytes held of a frame not yet whole."""
        return len(self._buffer)


def _check(kind: int, payload: bytes) -> None:
    if kind == TEXT:
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError:
            raise FramingError("a text message that is not UTF-8", 1007) from None
    elif kind == CLOSE:
        if len(payload) == 1:
            raise FramingError("a close with half a code")
        try:
            payload[2:].decode("utf-8")
        except UnicodeDecodeError:
            raise FramingError("a close reason that is not UTF-8", 1007) from None
