"""
The upgrade fast path: a WebSocket upgrade that arrives whole in the
connection's first read, in the plainest HTTP/1.1, is admitted without
twisted.web building a request for it.

twisted.web parses a request line by line, builds a C{Request}, routes it
through the site's resources, and autobahn then parses a copy of it again:
a sixth of the CPU of a WebSocket handshake.  Here the head is checked
once against a strict subset of what twisted.web accepts (see
L{parse_upgrade_head}); the admission pipeline sees the same
L{AdmissionRequest} it would see from twisted.web, and autobahn parses
the very bytes that were checked.  Anything outside that subset (a head
split over reads, a body, obsolete line folding, a header twisted.web
treats specially, a path that is not a service's) goes to twisted.web,
which answers exactly as it would without this module.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

from twisted.protocols.policies import ProtocolWrapper
from twisted.web import http

from tunnelgw.errors import Refusal

__all__ = [
    "UpgradeHead",
    "parse_upgrade_head",
    "refusal_parts",
    "refusal_response",
    "status_phrase",
    "take_over",
]

# The largest head the fast path reads (a browser's, cookies and all, is a
# few KiB); a larger one goes to twisted.web and its own limits.
MAX_HEAD = 8192
# Likewise the most header lines.
MAX_HEADERS = 64

# The whole head, checked in one pass: the request line C{GET SP
# origin-form SP HTTP/1.1} (a target of visible ASCII, less "#": a fragment
# has no place in one; twisted.web allows more, and the gateway's router
# refuses a fragment), then header lines, then the empty line, and nothing
# after it.  A header line is a field-name (RFC 9110 5.1: a token), the colon
# right after it, and a value as RFC 9110 5.5 allows it, less obs-text:
# visible ASCII, spaces and tabs.  A head that does not match (a bare CR or
# LF inside a line, a NUL, a control character, obs-fold, a space before a
# colon, bytes above 0x7e, another method or version) goes to twisted.web.
_HEAD = re.compile(
    rb"GET (/[\x21\x22\x24-\x7e]*) HTTP/1\.1\r\n"
    rb"((?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e]*\r\n)*)"
    rb"\r\n"
)
# headers whose meaning twisted.web implements (a body; 100-continue)
_SLOW_HEADERS = frozenset({"content-length", "transfer-encoding", "expect"})


class UpgradeHead:
    """
    A request head taken by the fast path: its path, its query arguments
    (as twisted.web's C{Request.args}) and its headers (lower-case names,
    every value in order, as twisted.web's C{getAllRawHeaders} gives them).
    """

    __slots__ = ("path", "query", "headers")

    def __init__(self, path: bytes, query: dict[bytes, list[bytes]], headers: dict[str, list[str]]) -> None:
        self.path = path
        self.query = query
        self.headers = headers


def parse_upgrade_head(data: bytes) -> UpgradeHead | None:
    """
    C{data}, a connection's first read, as a complete C{GET} request head
    in HTTP/1.1 with nothing after it, or C{None} for twisted.web to parse.

    Everything this accepts, twisted.web accepts too and reads the same
    way: the request line C{GET SP origin-form SP HTTP/1.1}; header names
    that are tokens with the colon right after them; values of visible
    ASCII, spaces and tabs, their surrounding spaces and tabs stripped; no
    body.
    """
    # Nothing may follow the head: a client waits for the 101 before it
    # sends a frame (RFC 6455 4.1), so more bytes are another request.
    if len(data) > MAX_HEAD + 4:
        return None
    match = _HEAD.fullmatch(data)
    if match is None:
        return None
    target, block = match.groups()
    lines = block.decode("ascii").split("\r\n")
    lines.pop()  # what follows the last line's CRLF: nothing
    if len(lines) > MAX_HEADERS:
        return None
    headers: dict[str, list[str]] = {}
    for line in lines:
        name, _, value = line.partition(":")  # a token has no colon
        name = name.lower()
        if name in _SLOW_HEADERS:
            return None
        value = value.strip(" \t")
        values = headers.get(name)
        if values is None:
            headers[name] = [value]
        else:
            values.append(value)
    path, question, query = target.partition(b"?")
    return UpgradeHead(path, http.parse_qs(query, 1) if question else {}, headers)


def status_phrase(status: int) -> str:
    """
    The reason phrase of an HTTP status (499: nginx's, for a client gone).
    """
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Client Closed Request" if status == 499 else "Error"


def refusal_parts(refusal: Refusal) -> tuple[dict[str, str], bytes]:
    """
    The headers and body of a refusal's response, whichever HTTP path
    writes it: the refusal's own headers, then a plain-text reason and
    C{Connection: close}.
    """
    body = refusal.reason.encode("utf-8") + b"\n"
    headers = {
        **refusal.headers,
        "Content-Type": "text/plain; charset=utf-8",
        "Cache-Control": "no-store",
        "Connection": "close",
        "Content-Length": str(len(body)),
    }
    return headers, body


def refusal_response(refusal: Refusal) -> bytes:
    """
    The HTTP response of a refusal, as twisted.web writes it for a refused
    request (C{tunnelgw.front.site._refuse}): status, C{Server} and C{Date}
    (which twisted.web's path adds), then L{refusal_parts}.
    """
    parts, body = refusal_parts(refusal)
    headers = {"Server": "tunnelgw", "Date": http.datetimeToString().decode("ascii"), **parts}
    lines = [f"HTTP/1.1 {refusal.status} {status_phrase(refusal.status)}"] + [
        f"{name}: {value}" for name, value in headers.items()
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def take_over(transport: Any, protocol: Any) -> None:
    """
    Connect C{protocol} to a connection's C{transport} in place of the HTTP
    channel, as autobahn's C{WebSocketResource} does it: on a TLS
    connection the TLS protocol wrapper delivers to the new protocol.
    """
    if isinstance(transport, ProtocolWrapper):
        transport.wrappedProtocol = protocol
    elif isinstance(transport.protocol, ProtocolWrapper):
        transport.protocol.wrappedProtocol = protocol
    else:
        transport.protocol = protocol
    protocol.makeConnection(transport)
