"""
STOMP frames (1.0, 1.1, 1.2): what a frame is, its limits and its
serializer (the parser is L{tunnelgw.adapters.stomp.parser}).

Header escaping follows the version: 1.2 and 1.1 escape C{\\n}, C{\\c} (colon)
and C{\\\\} (1.2 also C{\\r}); 1.0 has no escaping; CONNECT and CONNECTED
frames are never escaped (the version is not yet agreed when they pass).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "CLIENT_COMMANDS",
    "SERVER_COMMANDS",
    "Frame",
    "FrameError",
    "HEARTBEAT",
    "Limits",
    "NUL_IN_HEAD",
    "serialize",
    "unescape",
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


def unescape(text: str, version: str) -> str:
    """C{text} of a header read in C{version}, its escapes undone."""
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


NUL_IN_HEAD = "a NUL byte in the frame's command or headers"


def serialize(frame: Frame, version: str = "1.2") -> bytes:
    """
    The bytes of C{frame}, NUL-terminated.  Headers are escaped for
    C{version}; a C{content-length} is added when the body contains NUL.
    """
    escaped = frame.command not in UNESCAPED_COMMANDS
    table = None if not escaped or version == "1.0" else _ESCAPE_12 if version == "1.2" else _ESCAPE_11
    headers = frame.headers
    lines = [f"{key}:{value}" for key, value in headers]
    if not escaped:
        for key, value in headers:
            if "\n" in key or "\n" in value or ":" in key:
                raise FrameError(f"{frame.command} headers cannot carry a newline or a colon in a name")
    elif table is not None:
        text = "\n".join(lines)
        # the usual frame has nothing to escape: a colon a line, no newline
        # in a name or value, no backslash, no CR (translate is then the
        # identity, and a slow one)
        if (
            text.count(":") != len(lines)
            or text.count("\n") != len(lines) - 1
            or "\\" in text
            or "\r" in text
        ):
            lines = [f"{key.translate(table)}:{value.translate(table)}" for key, value in headers]
    head = "\n".join([frame.command, *lines])
    if "\x00" in head:  # escaping leaves a NUL as it is
        raise FrameError(NUL_IN_HEAD)
    if b"\x00" in frame.body and all(key != "content-length" for key, _ in headers):
        head += f"\ncontent-length:{len(frame.body)}"
    return (head + "\n\n").encode("utf-8") + frame.body + b"\x00"
