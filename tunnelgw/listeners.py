"""
A TCP listener that several gateway processes can share:
C{reuseport:PORT[:interface=ADDRESS][:backlog=N]}, anywhere an endpoint
description is taken (C{gateway.listen}, C{--listen}).

Each process binds the same address and port with C{SO_REUSEPORT}; the
kernel spreads new connections over them.  That is how one machine runs one
gateway process per core, or holds more tunnels than one process may have
file descriptors.  Processes share nothing else: see docs/operations.md,
"Several processes on one port", for what that means for limits and
refreshes.
"""

from __future__ import annotations

import re
import socket
from typing import Any

from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IStreamServerEndpoint,
    IStreamServerEndpointStringParser,
)
from twisted.plugin import IPlugin
from zope.interface import implementer

__all__ = [
    "DEFAULT_BACKLOG",
    "ReusePortEndpoint",
    "ReusePortParser",
    "bound_socket",
    "check_listener",
    "check_listeners",
    "with_backlog",
]

DEFAULT_BACKLOG = 1024
"""
The accept queue of a listener whose description names none.  Twisted's is
50: a hundred clients opening WebSockets at once overflowed it, the kernel
dropped their SYNs, and they waited a second for the retransmission
(handshake p99 1,053 ms against 85 ms with 1024).  The kernel caps it at
C{net.core.somaxconn} (docs/operations.md).
"""

# the listener kinds that take a backlog= option
_BACKLOG_KINDS = frozenset({"tcp", "tcp6", "ssl", "unix", "reuseport"})
_HAS_BACKLOG = re.compile(r"(?<!\\):backlog=")


def with_backlog(description: str, backlog: int = DEFAULT_BACKLOG) -> str:
    """
    C{description} (a server endpoint string) with C{backlog=} added when
    its kind takes one and it names none; any other as it is.
    """
    kind = description.split(":", 1)[0].strip().lower()
    if kind == "haproxy" and ":" in description:  # the PROXY protocol wraps another listener
        return "haproxy:" + with_backlog(description.split(":", 1)[1], backlog)
    if kind not in _BACKLOG_KINDS or ":" not in description or _HAS_BACKLOG.search(description):
        return description
    return f"{description}:backlog={backlog}"


def bound_socket(interface: str, port: int, backlog: int) -> socket.socket:
    """
    A listening, non-blocking TCP socket on C{interface}:C{port} that other
    sockets with C{SO_REUSEPORT} (of the same user) may bind too.

    @raise CannotListenError: the bind or listen failed.
    """
    family = socket.AF_INET6 if ":" in interface else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((interface, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        raise CannotListenError(interface, port, e) from None
    return sock


@implementer(IStreamServerEndpoint)
class ReusePortEndpoint:
    """
    Listens on a socket from L{bound_socket}, adopted by the reactor
    (C{IReactorSocket.adoptStreamPort}, which takes a copy of it).
    """

    def __init__(self, reactor: Any, port: int, interface: str = "", backlog: int = DEFAULT_BACKLOG) -> None:
        self._reactor = reactor
        self._port = port
        self._interface = interface
        self._backlog = backlog

    def listen(self, protocolFactory: IProtocolFactory) -> defer.Deferred[IListeningPort]:  # noqa: N803
        return defer.execute(self._listen, protocolFactory)

    def _listen(self, factory: IProtocolFactory) -> IListeningPort:
        sock = bound_socket(self._interface, self._port, self._backlog)
        try:
            port: IListeningPort = self._reactor.adoptStreamPort(sock.fileno(), sock.family, factory)
        finally:
            sock.close()  # the reactor listens on its own copy
        return port


@implementer(IPlugin, IStreamServerEndpointStringParser)
class ReusePortParser:
    """
    The C{reuseport:} prefix for L{twisted.internet.endpoints.serverFromString}.
    """

    prefix = "reuseport"

    def parseStreamServer(self, reactor: Any, *args: object, **kwargs: object) -> ReusePortEndpoint:  # noqa: N802
        """
        C{reuseport:PORT[:interface=ADDRESS][:backlog=N]}.
        """
        (port,) = args
        unknown = set(kwargs) - {"interface", "backlog"}
        if unknown:
            raise ValueError(f"reuseport: unknown option(s) {', '.join(sorted(unknown))}")
        interface = str(kwargs.get("interface", ""))
        return ReusePortEndpoint(
            reactor, int(str(port)), interface, int(str(kwargs.get("backlog", DEFAULT_BACKLOG)))
        )


def check_listener(key: str, description: str, passed: bool = True) -> None:
    """
    That C{description} builds a server endpoint, and for a UNIX socket
    that its directory exists (the listen would fail at start otherwise).
    A C{systemd:} listener's socket must have been passed to this process,
    unless C{passed} is false (C{tunnelgw check-config}, run where the
    service manager passes nothing): then only its syntax is checked.

    @raise tunnelgw.errors.ConfigError: naming C{key} and why, in one line.
    """
    # late: the plugin file imports this module while twistd scans plugins
    import os

    from twisted.internet.endpoints import serverFromString
    from twisted.internet.testing import MemoryReactor

    from tunnelgw.errors import ConfigError
    from tunnelgw.upstream import split_description

    parts = split_description(description)
    if parts[0] == "systemd" and not passed:
        _check_systemd(key, description, parts[1:])
        return
    try:
        serverFromString(MemoryReactor(), description)
    except Exception as e:
        if parts[0] == "systemd" and isinstance(e, (IndexError, KeyError)):
            names = os.environ.get("LISTEN_FDNAMES", "") if os.environ.get("LISTEN_FDS") else ""
            raise ConfigError(
                f"{key}: {description!r}: the service manager passed no such socket"
                f' (passed: {names or "none"}); see docs/operations.md, "systemd"'
            ) from None
        raise ConfigError(f"{key}: invalid endpoint {description!r}: {e}") from None
    if parts[0] == "unix" and len(parts) > 1:
        address = next((p[len("address=") :] for p in parts[1:] if p.startswith("address=")), parts[1])
        directory = os.path.dirname(os.path.abspath(address))
        if not os.path.isdir(directory):
            raise ConfigError(f"{key}: {description!r}: the directory {directory} does not exist")


def _check_systemd(key: str, description: str, args: list[str]) -> None:
    from tunnelgw.errors import ConfigError

    options = dict(arg.split("=", 1) for arg in args if "=" in arg)
    if options.get("domain") not in ("INET", "INET6", "UNIX"):
        raise ConfigError(f"{key}: {description!r}: domain= must be INET, INET6 or UNIX")
    if ("index" in options) == ("name" in options):
        raise ConfigError(f"{key}: {description!r}: give exactly one of index= or name=")


def check_listeners(config: Any, listen_key: str = "gateway.listen", passed: bool = True) -> None:
    """
    L{check_listener} for every listener of a configuration: C{listen}
    (named C{listen_key}, C{--listen} when the command line gave them)
    and the endpoints of its TLS listeners and of its metrics.

    @raise tunnelgw.errors.ConfigError: the first that is not valid.
    """
    for i, description in enumerate(config.listen):
        check_listener(f"{listen_key}[{i}]", description, passed)
    for i, listener in enumerate(config.tls_listeners):
        check_listener(f"gateway.tls_listeners[{i}].endpoint", listener.endpoint, passed)
    metrics = getattr(config, "metrics", None)
    if metrics is not None:
        check_listener("metrics.listen", metrics.listen, passed)
    admin = getattr(config, "admin", None)
    if admin is not None:
        check_listener("admin.listen", admin.listen, passed)
