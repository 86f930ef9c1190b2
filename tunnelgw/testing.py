"""
Fakes for testing tunnelgw and code built on it (adapters, login modules,
policies, upstream kinds) without sockets: a client leg, a half-closeable
string transport, a controllable backend endpoint, an adapter in a real
tunnel, a module's login, a policy's decisions.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from typing import Any

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import (
    IHostnameResolver,
    IHostResolution,
    IProtocol,
    IProtocolFactory,
    IReactorPluggableNameResolver,
    IResolutionReceiver,
    IStreamClientEndpoint,
)
from twisted.internet.testing import StringTransport
from zope.interface import alsoProvides, implementer

__all__ = [
    "AdapterHarness",
    "FakeClientLeg",
    "FakeEndpoint",
    "HalfCloseStringTransport",
    "callbacks",
    "client_frame",
    "clock_at_now",
    "cyclic_garbage",
    "log_in",
    "naming",
    "policy_from",
    "public_realm",
    "server_frames",
]


class HalfCloseStringTransport(StringTransport):
    """
    A L{StringTransport} that also records C{loseWriteConnection}.
    """

    write_closed = False
    aborted = False
    tls: Any = None
    protocol: Any = None  # as on real transports; autobahn's resource swaps it

    def startTLS(self, creator: Any) -> None:
        """
        Record the TLS connection creator a protocol's STARTTLS asked for.
        """
        self.tls = creator

    def loseWriteConnection(self) -> None:
        self.write_closed = True

    def abortConnection(self) -> None:
        self.aborted = True
        super().abortConnection()


class FakeClientLeg:
    """
    A client leg recording what the tunnel sends to the WebSocket client.
    """

    def __init__(self) -> None:
        self.transport = HalfCloseStringTransport()
        self.messages: list[tuple[bytes, bool]] = []
        self.closed: tuple[int, str] | None = None
        self.aborted = False
        self.input_buffered = 0

    def send_message(self, payload: bytes, is_binary: bool) -> None:
        self.messages.append((payload, is_binary))

    def close(self, code: int, reason: str) -> None:
        if self.closed is None:
            self.closed = (code, reason)

    def abort(self) -> None:
        self.aborted = True

    def buffered_input(self) -> int:
        return self.input_buffered


@implementer(IStreamClientEndpoint)
class FakeEndpoint:
    """
    A client endpoint whose outcome the test decides: C{connect} returns a
    Deferred held in C{pending}; call L{succeed} or L{fail} to settle it.
    """

    def __init__(self) -> None:
        self.pending: list[tuple[defer.Deferred[Any], IProtocolFactory]] = []
        self.descriptions: list[tuple[str, float]] = []

    def __call__(self, reactor: Any, description: str, timeout: float) -> FakeEndpoint:
        """
        Stand in for L{tunnelgw.upstream.endpoint_for}.
        """
        self.descriptions.append((description, timeout))
        return self

    def connect(self, factory: IProtocolFactory) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()
        self.pending.append((d, factory))
        return d

    def succeed(self) -> tuple[IProtocol, HalfCloseStringTransport]:
        d, factory = self.pending.pop(0)
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 9))
        assert protocol is not None
        transport = HalfCloseStringTransport()
        protocol.makeConnection(transport)
        d.callback(protocol)
        return protocol, transport

    def fail(self, error: Exception) -> None:
        d, _ = self.pending.pop(0)
        d.errback(error)


class AdapterHarness:
    """
    One adapter in a real L{tunnelgw.tunnel.relay.Tunnel}, in memory: the client
    leg is a L{FakeClientLeg} (C{client}), the backend a
    L{tunnelgw.tunnel.legs.BackendProtocol} over a L{HalfCloseStringTransport}
    (C{backend}, C{wire}).  Drive it with C{tunnel.client_message} and
    C{backend.dataReceived}.
    """

    def __init__(
        self,
        factory: Any,
        service: Any,
        subject: Any,
        subprotocol: str | None = None,
        policy: Any = None,
    ) -> None:
        from twisted.internet.task import Clock

        from tunnelgw.tunnel.legs import BackendProtocol
        from tunnelgw.tunnel.registry import TunnelRegistry
        from tunnelgw.tunnel.relay import Tunnel

        self.clock = Clock()
        self.client = FakeClientLeg()
        self.backend = BackendProtocol()
        self.wire = HalfCloseStringTransport()
        self.backend.makeConnection(self.wire)
        self.tunnel = Tunnel(
            reactor=self.clock,
            service=service,
            subprotocol=subprotocol,
            conn_id="c1",
            peer="192.0.2.1",
            subject=subject,
            adapter_factory=factory,
            backend=self.backend,
            registry=TunnelRegistry(),
            policy=policy,
        )
        self.tunnel.start(self.client)

    def sent(self) -> bytes:
        """
        What the backend was sent since the last call.
        """
        data = self.wire.value()
        self.wire.clear()
        return bytes(data)


def public_realm(name: str = "public", roles: Sequence[str] = ()) -> str:
    """
    The TOML of a realm that admits everyone (C{anonymous}, required),
    optionally with C{roles}: for a test's or a plugin's configuration.
    """
    options = f"options = {{ roles = {list(roles)!r} }}\n".replace("'", '"') if roles else ""
    return f'[realms.{name}]\n[[realms.{name}.modules]]\nmodule = "anonymous"\nflag = "required"\n{options}'


def clock_at_now() -> Any:
    """
    A L{twisted.internet.task.Clock} set to the wall clock's time: what a
    module under test reads for its time (tokens made for now stay valid).
    """
    import time

    from twisted.internet.task import Clock

    clock = Clock()
    clock.advance(time.time())
    return clock


def callbacks(**fields: Any) -> Any:
    """
    L{tunnelgw.security.callbacks.Callbacks} for a login module under test:
    C{fields} as given, an address of the documentation range, and a
    L{clock_at_now} as the reactor unless C{reactor} is given.
    """
    from tunnelgw.security.callbacks import Callbacks

    fields.setdefault("address", "192.0.2.10")
    fields.setdefault("reactor", clock_at_now())
    return Callbacks(**fields)


def log_in(factory: Any, options: dict[str, Any], given: Any) -> Any:
    """
    Log in with C{factory}'s module alone (flag required), its C{options}
    parsed as the configuration would: the L{tunnelgw.security.Subject}, or
    the module's L{tunnelgw.errors.LoginFailed} raised.  The module must
    answer at once (a Deferred it returns must have fired).
    """
    from tunnelgw.config.model import Flag, ModuleEntry
    from tunnelgw.security import Subject
    from tunnelgw.security.jaas import LoginContext

    entry = ModuleEntry(factory.name, factory, Flag.REQUIRED, factory.parse_config(options, "options"))
    results: list[Any] = []
    LoginContext("test", [entry]).login(given).addBoth(results.append)
    if not results:
        raise AssertionError("the login has not answered: fire what the module waits for first")
    (result,) = results
    if isinstance(result, Subject):
        return result
    raise result.value


def policy_from(factory: Any, options: dict[str, Any]) -> Any:
    """
    The L{tunnelgw.interfaces.IAuthorizationPolicy} C{factory} makes of
    C{options}, parsed as the configuration would (its C{ConfigError}s
    raised): ask it C{permits(subject, service, action, resource)}.
    """
    return factory.parse_config(options, "policies.test")


def client_frame(opcode: int, payload: bytes, fin: bool = True, mask: bytes = b"\x11\x22\x33\x44") -> bytes:
    """
    One WebSocket frame as a client sends it (RFC 6455 5.2: masked), for
    feeding a gateway in tests.
    """
    import struct

    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """
    The (opcode, payload) of each whole frame a server sent (unmasked).
    """
    import struct

    frames = []
    while data:
        opcode, n, offset = data[0] & 0x0F, data[1] & 0x7F, 2
        if n == 126:
            n, offset = struct.unpack("!H", data[2:4])[0], 4
        elif n == 127:
            n, offset = struct.unpack("!Q", data[2:10])[0], 10
        frames.append((opcode, data[offset : offset + n]))
        data = data[offset + n :]
    return frames


def cyclic_garbage(before: set[int], packages: tuple[str, ...]) -> list[str]:
    """
    The types of what only the garbage collector would free now (objects
    left in reference cycles), of C{packages}' modules, made since
    C{before} (the ids of C{gc.get_objects()} taken then): what a test
    that runs with the collector disabled expects to be empty.
    """
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        return [
            type(o).__qualname__
            for o in gc.garbage
            if id(o) not in before and type(o).__module__.startswith(packages)
        ]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


@implementer(IHostResolution)
class _Resolution:
    def __init__(self, name: str) -> None:
        self.name = name

    def cancel(self) -> None:
        pass  # already over


@implementer(IHostnameResolver)
class _NoNames:
    """Resolves every name to no address at once: a connect to it fails."""

    def resolveHostName(  # noqa: N802 (Twisted's interface)
        self,
        resolutionReceiver: IResolutionReceiver,  # noqa: N803
        hostName: str,  # noqa: N803
        portNumber: int = 0,  # noqa: N803
        addressTypes: Any = None,  # noqa: N803
        transportSemantics: str = "TCP",  # noqa: N803
    ) -> IHostResolution:
        resolution = _Resolution(hostName)
        resolutionReceiver.resolutionBegan(resolution)
        resolutionReceiver.resolutionComplete()
        return resolution


def naming(reactor: Any) -> Any:
    """
    C{reactor} (one of twisted.internet.testing's memory reactors), made
    to provide L{IReactorPluggableNameResolver} if it does not (older
    Twisted's do not): a C{HostnameEndpoint} built on it then does not warn
    that such a reactor is deprecated.  Its names resolve to no address.
    """
    if not IReactorPluggableNameResolver.providedBy(reactor):
        alsoProvides(reactor, IReactorPluggableNameResolver)
        reactor.nameResolver = _NoNames()
    return reactor
