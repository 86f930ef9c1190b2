"""
STOMP frames (1.0, 1.1, 1.2): an incremental, bounded parser and a
serializer.

The parser takes bytes cut anywhere (a frame split across WebSocket
messages, several frames in one) and yields whole frames and heart-beats.
Every size is bounded: the command and header lines, the number of
headers, the body.  Anything malformed raises L{FrameError} with a reason
fit for a STOMP C{ERROR} frame's C{message} header.

Header escaping follows the version: 1.2 and 1.1 escape C{\\n}, C{\\c} (colon)
and C{\\\\} (1.2 also C{\\r}); 1.0 has no escaping; CONNECT and CONNECTED
frames are never escaped (the version is not yet agreed when they pass).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = [
    "CLIENT_COMMANDS",
    "SERVER_COMMANDS",
    "Frame",
    "FrameError",
    "HEARTBEAT",
    "Limits",
    "Parser",
    "serialize",
]

CLIENT_COMMANDS = frozenset(
    {
        "CONNECT",
        "STOMP",
        "SEND",
        "SUBSCRIBE",
        "UNSUBSCRIBE",
        "ACK",
        "NACK",
        "BEGIN",
        "COMMIT",
        "ABORT",
        "DISCONNECT",
    }
)
SERVER_COMMANDS = frozenset({"CONNECTED", "MESSAGE", "RECEIPT", "ERROR"})
UNESCAPED_COMMANDS = frozenset({"CONNECT", "CONNECTED"})

HEARTBEAT = object()
"""Yielded by L{Parser.feed} for each heart-beat EOL between frames."""


class FrameError(ValueError):
    """
    Malformed or oversized input; C{reason} is safe to send back to the peer,
    C{too_big} tells a size limit from malformed input.
    """

    def __init__(self, reason: str, too_big: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.too_big = too_big


@dataclass(frozen=True)
class Limits:
    max_line: int = 8 * 1024
    max_headers: int = 64
    max_body: int = 1024 * 1024


@dataclass
class Frame:
    """
    A frame: its command, headers in order (repeats kept; the first wins
    when read with L{get}), and body.
    """

    command: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def get(self, name: str, default: str | None = None) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return default

    def set(self, name: str, value: str) -> None:
        """
        Replace every occurrence of C{name} by one, in the first one's place.
        """
        replaced = False
        headers = []
        for key, old in self.headers:
            if key == name:
                if not replaced:
                    headers.append((key, value))
                    replaced = True
            else:
                headers.append((key, old))
        if not replaced:
            headers.append((name, value))
        self.headers = headers

    def remove(self, name: str) -> None:
        self.headers = [(k, v) for k, v in self.headers if k != name]


_ESCAPES_12 = {"\\": "\\\\", "\n": "\\n", ":": "\\c", "\r": "\\r"}
# str.translate does it in one C loop (a join over a generator of every
# character was most of a relayed MESSAGE's cost)
_ESCAPE_12 = str.maketrans(_ESCAPES_12)
_ESCAPE_11 = str.maketrans({k: v for k, v in _ESCAPES_12.items() if k != "\r"})
_UNESCAPES_12 = {"\\": "\\", "n": "\n", "c": ":", "r": "\r"}
_UNESCAPES_11 = {"\\": "\\", "n": "\n", "c": ":"}


def _unescape(text: str, version: str) -> str:
    if version == "1.0" or "\\" not in text:
        return text
    table = _UNESCAPES_12 if version == "1.2" else _UNESCAPES_11
    out = []
    chars = iter(text)
    for char in chars:
        if char == "\\":
            following = next(chars, "")
            if following not in table:
                raise FrameError(f"invalid escape sequence \\{following} in a header")
            out.append(table[following])
        else:
            out.append(char)
    return "".join(out)


_NUL_IN_HEAD = "a NUL byte in the frame's command or headers"


def serialize(frame: Frame, version: str = "1.2") -> bytes:
    """
    The bytes of C{frame}, NUL-terminated.  Headers are escaped for
    C{version}; a C{content-length} is added when the body contains NUL.
    """
    escaped = frame.command not in UNESCAPED_COMMANDS
    table = None if not escaped or version == "1.0" else _ESCAPE_12 if version == "1.2" else _ESCAPE_11
    lines = [frame.command]
    has_length = False
    for key, value in frame.headers:
        if key == "content-length":
            has_length = True
        if table is not None:
            lines.append(f"{key.translate(table)}:{value.translate(table)}")
            continue
        if not escaped and ("\n" in key or "\n" in value or ":" in key):
            raise FrameError(f"{frame.command} headers cannot carry a newline or a colon in a name")
        lines.append(f"{key}:{value}")
    head = "\n".join(lines)
    if "\x00" in head:  # escaping leaves a NUL as it is
        raise FrameError(_NUL_IN_HEAD)
    if b"\x00" in frame.body and not has_length:
        head += f"\ncontent-length:{len(frame.body)}"
    return (head + "\n\n").encode("utf-8") + frame.body + b"\x00"


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
            item = self._next()
            if item is None:
                return
            del self._buffer[: item[1]]
            yield item[0]

    def feed_spans(self, data: bytes) -> Iterator[tuple[Frame | object, bytes]]:
        """
        As L{feed}, with the exact bytes of each frame or heart-beat, for a
        relay that forwards what it inspected unchanged.
        """
        self._buffer += data
        while True:
            item = self._next()
            if item is None:
                return
            raw = bytes(self._buffer[: item[1]])
            del self._buffer[: item[1]]
            yield item[0], raw

    def _next(self) -> tuple[Frame | object, int] | None:
        """
        The next frame or heart-beat at the start of the buffer and its
        length in bytes (the caller removes them), or C{None} for "not yet".
        """
        buf = self._buffer
        # heart-beats: EOLs between frames
        if buf[:1] == b"\n":
            return HEARTBEAT, 1
        if buf[:2] == b"\r\n":
            return HEARTBEAT, 2
        if buf[:1] == b"\r" and len(buf) == 1:
            return None
        end = buf.find(b"\n\n")
        # a CRLF head ends before the first LF LF, or there is none: not
        # searched past it (the buffer may hold many frames)
        crlf = buf.find(b"\r\n\r\n", 0, len(buf) if end == -1 else end + 4)
        if crlf != -1 and (end == -1 or crlf < end):
            head_end, body_start = crlf, crlf + 4
        elif end != -1:
            head_end, body_start = end, end + 2
        else:
            if buf.find(b"\x00") != -1:
                raise FrameError(_NUL_IN_HEAD)
            limit = self.limits.max_line * (self.limits.max_headers + 1)
            if len(buf) > limit:
                raise FrameError("frame headers too large", too_big=True)
            return None
        # A NUL ends a frame: one in the command or a header is where a
        # broker that reads up to the first NUL would see a frame end (and
        # the rest as a second frame, never inspected here).
        if buf.find(b"\x00", 0, head_end) != -1:
            raise FrameError(_NUL_IN_HEAD)
        head = bytes(buf[:head_end])
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError:
            raise FrameError("frame headers are not UTF-8") from None
        lines = (text.replace("\r\n", "\n") if "\r" in text else text).split("\n")
        command = lines[0]
        if command not in self.commands:
            raise FrameError(f"unknown or unexpected command {command[:32]!r}")
        if len(lines) - 1 > self.limits.max_headers:
            raise FrameError(f"more than {self.limits.max_headers} headers", too_big=True)
        version = self.version
        # no backslash in the head: nothing to unescape in any header
        escaped = command not in UNESCAPED_COMMANDS and version != "1.0" and "\\" in text
        max_line = self.limits.max_line
        headers = []
        length_text = None  # the first content-length, as Frame.get reads it
        for line in lines[1:]:
            if len(line) > max_line:
                raise FrameError(f"a header line is longer than {max_line} bytes", too_big=True)
            key, sep, value = line.partition(":")
            if not sep:
                raise FrameError("a header line has no colon")
            if escaped:
                key, value = _unescape(key, version), _unescape(value, version)
            if length_text is None and key == "content-length":
                length_text = value
            headers.append((key, value))
        frame = Frame(command, headers)
        if length_text is not None:
            if not (length_text.isascii() and length_text.isdigit()):
                raise FrameError("content-length is not a number")
            length = int(length_text)
            if length > self.limits.max_body:
                raise FrameError(f"body larger than {self.limits.max_body} bytes", too_big=True)
            if len(buf) < body_start + length + 1:
                return None
            if buf[body_start + length] != 0:
                raise FrameError("the body is not followed by NUL where content-length says")
            body_end = body_start + length
        else:
            body_end = buf.find(b"\x00", body_start)
            if body_end == -1:
                if len(buf) - body_start > self.limits.max_body:
                    raise FrameError(f"body larger than {self.limits.max_body} bytes", too_big=True)
                return None
            if body_end - body_start > self.limits.max_body:
                raise FrameError(f"body larger than {self.limits.max_body} bytes", too_big=True)
        frame.body = bytes(buf[body_start:body_end])
        return frame, body_end + 1
