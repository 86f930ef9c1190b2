"""
The admission checks that need no I/O: the connection caps, the
WebSocket upgrade's syntax, the Origin, the subprotocol.  Each raises
L{tunnelgw.errors.Refusal} with its status.
"""

from __future__ import annotations

import re

from tunnelgw.admission.request import AdmissionRequest
from tunnelgw.config.model import ServiceConfig
from tunnelgw.config.values import normalize_origin
from tunnelgw.errors import Refusal

__all__ = ["check_limits", "check_origin", "check_websocket_upgrade", "choose_subprotocol"]


def choose_subprotocol(offered: list[str], service: ServiceConfig) -> str | None:
    """
    The service's most preferred subprotocol among those C{offered}, or
    C{None} when nothing was offered and the service allows that.

    @raise Refusal: (400) nothing acceptable.
    """
    if not offered:
        if service.allow_no_subprotocol:
            return None
        raise Refusal(
            400,
            "a subprotocol is required; this service offers: " + ", ".join(service.subprotocols),
        )
    for name in service.subprotocols:
        if name in offered:
            return name
    ours = ", ".join(service.subprotocols) or "none"
    raise Refusal(
        400,
        f"none of the offered subprotocols ({', '.join(offered)}) is supported; this service offers: {ours}",
    )


def check_limits(request: AdmissionRequest) -> None:
    """
    @raise Refusal: (503) the gateway is at its connection cap; (429) the
        client's address is at its own.
    """
    if request.lease.over_global:
        raise Refusal(503, "the gateway is at its connection limit", {"Retry-After": "5"})
    if request.lease.over_address:
        raise Refusal(429, "too many connections from your address", {"Retry-After": "5"})


def check_origin(request: AdmissionRequest, service: ServiceConfig) -> str | None:
    """
    @return: the request's origin, normalized; C{None} when it sent none.
    @raise Refusal: (403) a missing Origin the service does not allow, or an
        origin not on its allow-list; (400) several Origin headers.
    """
    origin = request.single("Origin")
    if origin is None:
        if service.allow_missing_origin:
            return None
        raise Refusal(403, "the Origin header is required")
    try:
        normalized = normalize_origin(origin)
    except ValueError:
        raise Refusal(403, f"origin {origin!r} is not allowed") from None
    if normalized not in service.origins:
        raise Refusal(403, f"origin {origin!r} is not allowed")
    return normalized


# 16 bytes in base64 (RFC 6455 4.1), exactly what base64.b64decode(key,
# validate=True) decodes to 16 bytes: 22 letters of the alphabet, then "==".
_WEBSOCKET_KEY = re.compile(r"[A-Za-z0-9+/]{22}==")


def check_websocket_upgrade(request: AdmissionRequest) -> None:
    """
    The request is a syntactically valid RFC 6455 upgrade.

    @raise Refusal: 405 (not GET), 505 (not HTTP/1.1), 400 (a body, no
        Host, or one with a bad port), 426 (not an upgrade, or a version other than
        13, with C{Sec-WebSocket-Version: 13}), 400 (bad key, a subprotocol
        offered twice, several extension headers).
    """
    if request.method != "GET":
        raise Refusal(405, "WebSocket upgrades use GET", {"Allow": "GET"})
    if request.http_version != "HTTP/1.1":
        raise Refusal(505, "WebSocket upgrades use HTTP/1.1")
    # A body would be read as frames once the connection is upgraded (a
    # smuggled message), or left between the head and them.
    lengths = request.headers.get("content-length", [])
    if request.headers.get("transfer-encoding") or any(v.strip() != "0" for v in lengths):
        raise Refusal(400, "a WebSocket upgrade has no body")
    # What autobahn would refuse after us (RFC 6455 4.1: one Host, a
    # numeric port), refused here so that the logged decision is the answer.
    host = request.single("Host")
    if not host:
        raise Refusal(400, "the Host header is missing")
    _, colon, port = host.rpartition(":")
    if colon and not host.endswith("]") and not port.strip().isdigit():
        raise Refusal(400, "the Host header has an invalid port")
    upgrade = [v.lower() for v in request.values("Upgrade")]
    connection = [v.lower() for v in request.values("Connection")]
    if "websocket" not in upgrade or "upgrade" not in connection:
        raise Refusal(
            426,
            "this is a WebSocket endpoint: send Upgrade: websocket",
            {"Upgrade": "websocket", "Sec-WebSocket-Version": "13"},
        )
    if request.single("Sec-WebSocket-Version") != "13":
        raise Refusal(426, "only WebSocket version 13 is supported", {"Sec-WebSocket-Version": "13"})
    key = request.single("Sec-WebSocket-Key")
    if key is None:
        raise Refusal(400, "the Sec-WebSocket-Key header is missing")
    if _WEBSOCKET_KEY.fullmatch(key) is None:
        raise Refusal(400, "Sec-WebSocket-Key is not 16 bytes in base64")
    offered = request.subprotocols
    if len(set(offered)) != len(offered):
        raise Refusal(400, "a subprotocol is offered more than once")
    request.single("Sec-WebSocket-Extensions")  # 400 if it appears more than once
