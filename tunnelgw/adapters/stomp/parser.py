"""
An incremental, bounded parser of STOMP frames (1.0, 1.1, 1.2).

It takes bytes cut anywhere (a frame split across WebSocket messages,
several frames in one) and yields whole frames and heart-beats.  Every size
is bounded: the command and header lines, the number of headers, the body.
Anything malformed raises L{FrameError} with a reason fit for a STOMP
C{ERROR} frame's C{message} header.  Header unescaping follows the version
(see L{tunnelgw.adapters.stomp.frames}).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import NamedTuple

from tunnelgw.adapters.stomp.frames import (
    CLIENT_COMMANDS,
    HEARTBEAT,
    NUL_IN_HEAD,
    UNESCAPED_COMMANDS,
    Frame,
    FrameError,
    Limits,
    unescape,
)

__all__ = ["Parser", "Relayed"]


class Relayed(NamedTuple):
    """
    What L{Parser.relay} found: every whole frame and heart-beat, exactly as
    received, in one piece (C{data}); those of the frames it was asked to
    inspect, parsed (C{frames}); what ended C{data} early (C{error}: the
    parser must not be fed again).
    """

    data: bytes
    frames: list[Frame]
    error: FrameError | None


# A head of plain ASCII (no NUL, CR or backslash) with a colon on every
# header line, its command caught: one pass, with nothing to backtrack.
_PLAIN = re.compile(rb"([^\x00\n\r\\\x80-\xff]*)(?:\n[^\x00\n\r\\:\x80-\xff]*:[^\x00\n\r\\\x80-\xff]*)*+")


class Parser:
    """
    Feed bytes, get frames.  C{version} (set once CONNECTED has fixed it)
    decides header unescaping; C{commands} are those this side accepts.
    """

    def __init__(
        self, commands: frozenset[str] = CLIENT_COMMANDS, limits: Limits | None = None, version: str = "1.2"
    ) -> None:
        self.commands = commands
        self.limits = limits or Limits()
        self.version = version
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> Iterator[Frame | object]:
        """
        Add C{data}; yield every complete frame (or L{HEARTBEAT}) it finishes.

        @raise FrameError: malformed or oversized input; the parser must not
            be fed again.
        """
        self._buffer += data
        while True:
            item = self._next(0, None)
            if item is None:
                return
            del self._buffer[: item[1]]
            yield item[0]

    def relay(self, data: bytes, inspect: frozenset[str]) -> Relayed:
        """
        Add C{data}, for a relay that forwards what it checked unchanged:
        the bytes of every whole frame and heart-beat it finishes, and
        those of the frames whose command is in C{inspect}.  Every frame is
        checked as L{feed} checks it (the same limits, the same refusals);
        one whose head has nothing unusual (no CR, no escape, no line near
        the limit) is checked without being taken apart into a L{Frame}.
        """
        buf = self._buffer
        buf += data
        frames: list[Frame] = []
        done = 0
        error = None
        try:
            while True:
                item = self._next(done, inspect)
                if item is None:
                    break
                if isinstance(item[0], Frame) and item[0].command in inspect:
                    frames.append(item[0])
                done = item[1]
        except FrameError as e:
            error = e
        whole = bytes(buf[:done])
        del buf[:done]
        return Relayed(whole, frames, error)

    def _next(self, start: int, inspect: frozenset[str] | None) -> tuple[Frame | object | None, int] | None:
        """
        The next frame or heart-beat at C{start} in the buffer and where it
        ends, or C{None} for "not yet".  With C{inspect}, a frame whose
        command is not in it comes back as C{None} when the short check
        (L{_plain}) can vouch for it.
        """
        buf = self._buffer
        # heart-beats: EOLs between frames
        first = buf[start] if start < len(buf) else None
        if first == 10:  # LF
            return HEARTBEAT, start + 1
        if first == 13:  # CR
            if start + 1 == len(buf):
                return None
            if buf[start + 1] == 10:
                return HEARTBEAT, start + 2
        end = buf.find(b"\n\n", start)
        # a CRLF head ends before the first LF LF, or there is none: not
        # searched past it (the buffer may hold many frames)
        crlf = buf.find(b"\r\n\r\n", start, len(buf) if end == -1 else end + 4)
        if crlf != -1 and (end == -1 or crlf < end):
            head_end, body_start = crlf, crlf + 4
        elif end != -1:
            head_end, body_start = end, end + 2
        else:
            if buf.find(b"\x00", start) != -1:
                raise FrameError(NUL_IN_HEAD)
            limit = self.limits.max_line * (self.limits.max_headers + 1)
            if len(buf) - start > limit:
                raise FrameError("frame headers too large", too_big=True)
            return None
        if inspect is not None:
            body_end = self._plain(start, head_end, body_start, inspect)
            if body_end is not None:
                return (None, body_end + 1) if body_end >= 0 else None
        # A NUL ends a frame: one in the command or a header is where a
        # broker that reads up to the first NUL would see a frame end (and
        # the rest as a second frame, never inspected here).
        if buf.find(b"\x00", start, head_end) != -1:
            raise FrameError(NUL_IN_HEAD)
        frame, length = self._head(bytes(buf[start:head_end]))
        if length is not None:
            if len(buf) < body_start + length + 1:
                return None
            if buf[body_start + length] != 0:
                raise FrameError("the body is not followed by NUL where content-length says")
            body_end = body_start + length
        else:
            body_end = self._body_end(body_start)
            if body_end == -1:
                return None
        frame.body = bytes(buf[body_start:body_end])
        return frame, body_end + 1

    def _head(self, head: bytes) -> tuple[Frame, int | None]:
        """A head taken apart: the frame (with no body yet) and its content-length."""
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError:
            raise FrameError("frame headers are not UTF-8") from None
        if "\r" in text:
            text = text.replace("\r\n", "\n")
        command, _, rest = text.partition("\n")
        if command not in self.commands:
            raise FrameError(f"unknown or unexpected command {command[:32]!r}")
        count = text.count("\n")
        if count > self.limits.max_headers:
            raise FrameError(f"more than {self.limits.max_headers} headers", too_big=True)
        version = self.version
        # no backslash in the head: nothing to unescape in any header
        escaped = command not in UNESCAPED_COMMANDS and version != "1.0" and "\\" in text
        headers = self._lines(rest.split("\n"), escaped) if count else []
        length_text = None  # the first content-length, as Frame.get reads it
        if "content-length" in rest:
            for key, value in headers:
                if key == "content-length":
                    length_text = value
                    break
        length = None
        if length_text is not None:
            if not (length_text.isascii() and length_text.isdigit()):
                raise FrameError("content-length is not a number")
            length = int(length_text)
            if length > self.limits.max_body:
                raise FrameError(f"body larger than {self.limits.max_body} bytes", too_big=True)
        return Frame(command, headers), length

    def _lines(self, lines: list[str], escaped: bool) -> list[tuple[str, str]]:
        """Each header line, name and value at its first colon, checked in order."""
        max_line, version = self.limits.max_line, self.version
        headers = []
        for line in lines:
            if len(line) > max_line:
                raise FrameError(f"a header line is longer than {max_line} bytes", too_big=True)
            key, sep, value = line.partition(":")
            if not sep:
                raise FrameError("a header line has no colon")
            if escaped:
                key, value = unescape(key, version), unescape(value, version)
            headers.append((key, value))
        return headers

    def _body_end(self, body_start: int) -> int:
        """Where a body with no content-length ends (its NUL), or -1: not yet."""
        buf = self._buffer
        body_end = buf.find(b"\x00", body_start)
        if body_end == -1:
            if len(buf) - body_start > self.limits.max_body:
                raise FrameError(f"body larger than {self.limits.max_body} bytes", too_big=True)
            return -1
        if body_end - body_start > self.limits.max_body:
            raise FrameError(f"body larger than {self.limits.max_body} bytes", too_big=True)
        return body_end

    def _plain(self, start: int, head_end: int, body_start: int, inspect: frozenset[str]) -> int | None:
        """
        The short check of a relayed frame (L{relay}): where its body ends,
        -1 for "not yet", or C{None} when it takes the full parse (a
        command to inspect, or anything unusual; the full parse then finds
        what a bad frame is refused for).  What it passes, the full parse
        passes with the same end: a head shorter than a line may be (so no
        line is too long) of ASCII with no NUL, CR or backslash, a command
        this side accepts, no more headers than allowed, a colon on every
        header line, and a content-length (its first) that is a number
        within the limit and followed by NUL.  A body with no
        content-length is found as the full parse finds it (L{_body_end}),
        refusal included.
        """
        buf, limits = self._buffer, self.limits
        if head_end - start > limits.max_line:
            return None
        plain = _PLAIN.fullmatch(buf, start, head_end)
        if plain is None:
            return None
        command = plain.group(1).decode("ascii")
        if command in inspect or command not in self.commands:
            return None
        if buf.count(b"\n", start, head_end) > limits.max_headers:
            return None
        at = buf.find(b"\ncontent-length:", start, head_end)
        if at == -1:  # the head passed: the full parse would refuse the body alike
            return self._body_end(body_start)
        value = buf[at + 16 : head_end].split(b"\n", 1)[0]
        if not value.isdigit():
            return None
        length = int(value)
        if length > limits.max_body:
            return None
        body_end = body_start + length
        if len(buf) <= body_end:
            return -1
        return body_end if buf[body_end] == 0 else None
