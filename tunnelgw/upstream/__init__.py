"""
Upstream (backend) endpoints from description strings; the kinds of
upstream, one per scheme, are in L{tunnelgw.upstream.kinds}.

C{tcp:HOST:PORT} or C{tcp:host=HOST:port=PORT} becomes a
L{HostnameEndpoint} for a name (IPv4 and IPv6, with the connect timeout),
or a TCP4/TCP6 endpoint for an address literal, never Twisted's IPv4-only
parse of a name.  Every other byte-stream description (C{unix:path=...},
C{tls:...}) goes to L{clientFromString} unchanged.
"""

from __future__ import annotations

import functools
import ipaddress

from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    clientFromString,
)
from twisted.internet.interfaces import IReactorCore, IStreamClientEndpoint

__all__ = ["address_of", "check_tcp", "endpoint_for", "split_description"]


def split_description(description: str) -> list[str]:
    """
    Split an endpoint description on unescaped colons, as Twisted does
    (C{\\:} is a literal colon, for IPv6 addresses).
    """
    parts, current, chars = [], [], iter(description)
    for char in chars:
        if char == "\\":
            current.append(next(chars, ""))
        elif char == ":":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def check_tcp(description: str) -> tuple[str, int]:
    args: list[str] = []
    kwargs: dict[str, str] = {}
    for part in split_description(description)[1:]:
        key, sep, value = part.partition("=")
        if sep:
            kwargs[key] = value
        else:
            args.append(part)
    unknown = set(kwargs) - {"host", "port"}
    if unknown:
        raise ValueError(
            f"unknown tcp option(s) {', '.join(sorted(unknown))}; use host and port (the timeout is limits.connect_timeout)"
        )
    host = kwargs.get("host") or (args[0] if args else "")
    port_text = kwargs.get("port") or (args[1] if len(args) > 1 else "")
    if not host or not port_text or len(args) > 2:
        raise ValueError(f"expected tcp:HOST:PORT or tcp:host=HOST:port=PORT, got {description!r}")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"port must be a number, got {port_text!r}") from None
    if not 0 < port < 65536:
        raise ValueError(f"port out of range: {port}")
    return host, port


def endpoint_for(reactor: IReactorCore, description: str, timeout: float) -> IStreamClientEndpoint:
    """
    Build the client endpoint of an upstream description; TCP endpoints
    fail with a timeout error after C{timeout} seconds.
    """
    if description.startswith("tcp:"):
        return _tcp_endpoint(reactor, description, timeout)
    return clientFromString(reactor, description)


@functools.lru_cache(maxsize=256)
def address_of(description: str) -> tuple[str, int] | None:
    """
    The address and port of a C{tcp:} description that names an address
    literal (IPv4 or IPv6); C{None} for a name, another kind or a
    description that is not valid.
    """
    if not description.startswith("tcp:"):
        return None
    try:
        host, port = check_tcp(description)
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    return str(address), port


@functools.lru_cache(maxsize=256)
def _tcp_endpoint(reactor: IReactorCore, description: str, timeout: float) -> IStreamClientEndpoint:
    """
    A TCP endpoint holds only its address and timeout, and connects any
    number of times: one per description, not one per connection.  (Other
    endpoints are built anew each time: a TLS one reads its certificate
    files, which may have been renewed.)
    """
    address = address_of(description)
    if address is None:
        host, port = check_tcp(description)  # its ValueError says what is wrong
        return HostnameEndpoint(reactor, host, port, timeout=timeout)
    # An address needs no resolution (nor IDNA checks) on every connect.
    host, port = address
    if ":" in host:
        return TCP6ClientEndpoint(reactor, host, port, timeout=timeout)
    return TCP4ClientEndpoint(reactor, host, port, timeout=timeout)
