"""
Flow-control helpers shared by the tunnel legs.

Twisted's file-descriptor transports pause their registered streaming
producer when their write buffer exceeds C{bufferSize} and resume it once
the buffer has drained into the kernel.  tunnelgw uses that as its high-water
mark (C{limits.high_water}); see docs/architecture.md, "Flow control".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import tcp
from twisted.internet.interfaces import IPullProducer, IPushProducer
from zope.interface import implementer

__all__ = [
    "pending_bytes",
    "set_high_water",
    "write_now",
    "half_close_now",
    "close_now",
    "FlushWatcher",
    "Gate",
    "Valve",
    "CLIENT_FULL",
    "BACKEND_FULL",
    "FLUSHING",
    "RATE",
]

_MAX_DEPTH = 4


def _layers(transport: Any) -> list[Any]:
    """
    The transport and those under it (TLS over TCP: two layers).
    """
    layers: list[Any] = []
    while transport is not None and len(layers) < _MAX_DEPTH:
        layers.append(transport)
        transport = getattr(transport, "transport", None)
    return layers


def release_connector(transport: Any) -> None:
    """
    Unlink a lost outgoing connection from its connector, and the connector
    from the endpoint's factory, so that reference counting frees them.

    Twisted leaves every outgoing connection in reference cycles: the
    connection and its connector refer to each other (C{connector},
    C{transport}), and an endpoint's wrapping factory refers to the
    connector and to its own Deferred, whose canceller is the factory's
    method.  Only the garbage collector frees them then, with all they
    hold: for a backend connection that lived long, its protocol and its
    tunnel, kept in the oldest generation until a full collection (which
    scans every tunnel).  None of these links is followed once the
    connection is lost.  Twisted's attributes are read with getattr: where
    one is missing (another Twisted), it is left alone.
    """
    for layer in _layers(transport):
        connector = getattr(layer, "connector", None)
        if connector is None:
            continue
        if getattr(connector, "transport", None) is layer:
            connector.transport = None
        factory: Any = getattr(connector, "factory", None)
        if getattr(factory, "_connector", None) is connector:
            factory._connector = None
        if getattr(getattr(factory, "_onConnection", None), "called", False):
            factory._onConnection = None


def pending_bytes(transport: Any) -> int:
    """
    Bytes written to C{transport} that have not reached the kernel yet,
    through every layer (TLS application buffer, TCP write buffer).

    This reads Twisted's buffer attributes, which have no public accessor;
    a transport without them counts as 0.
    """
    total = 0
    for layer in _layers(transport):
        total += _buffered(layer) or 0
        app = getattr(layer, "_appSendBuffer", None)
        if app:
            total += sum(len(chunk) for chunk in app)
    return total


def _buffered(layer: Any) -> int | None:
    """
    The bytes in a file-descriptor transport's own write buffers, or
    C{None} if it has none (or Twisted's attributes are not as expected).
    """
    buf = getattr(layer, "dataBuffer", None)
    offset = getattr(layer, "offset", None)
    temp = getattr(layer, "_tempDataLen", None)
    if (
        not isinstance(buf, (bytes, bytearray, memoryview))
        or type(offset) is not int
        or type(temp) is not int
    ):
        return None
    return len(buf) - offset + temp


def _socket_layer(transport: Any) -> tcp.Connection | None:
    """
    The socket under C{transport} (itself, or under TLS), if it is one of
    Twisted's TCP or UNIX connections.
    """
    for layer in _layers(transport):
        if isinstance(layer, tcp.Connection):
            return layer
    return None


def _idle(layer: tcp.Connection) -> bool:
    """
    Nothing waits in the connection's write buffers (any doubt about
    Twisted's attributes means something waits).
    """
    return _buffered(layer) == 0


def _open(layer: tcp.Connection) -> bool:
    return bool(layer.connected) and not layer.disconnecting


def write_now(transport: Any, data: bytes) -> None:
    """
    C{transport.write(data)}, and when nothing was waiting to be sent
    before it, the bytes go to the kernel now instead of on the reactor's
    next turn.

    A Twisted transport only buffers a write and sends it when the reactor
    next finds the socket writable: one more pass through the reactor (and
    two more epoll calls) for every message a tunnel relays, which is a
    tenth of a round trip through the gateway and a fifth of its
    throughput.  Sending at once is what the reactor would do next: on a
    plain TCP connection, its C{writeSomeData}; under TLS, the TCP
    connection's own C{doWrite} (its IWriteDescriptor method) once the TLS
    layer has written to it.  Order, high-water pausing and half-closes
    behave as before.  If the send fails, the transport is left registered
    for writing and the reactor finds the failure on its next turn as it
    always would.  When something was already waiting (the socket is full,
    or the reactor is about to write), the write only joins it.
    """
    if _plain_and_idle(transport):
        _send(transport, data)  # the usual case, told in a few reads
        return
    layer = _socket_layer(transport)
    if layer is None or not _idle(layer):
        transport.write(data)
        return
    if transport is layer and _plain(layer):
        _send(layer, data)
        return
    transport.write(data)
    if _open(layer) and not _idle(layer):
        layer.doWrite()


def half_close_now(transport: Any) -> None:
    """
    C{transport.loseWriteConnection()}, and on one of Twisted's plain TCP
    connections with nothing waiting, the half-close (the FIN) now rather
    than on the reactor's next turn: the transport's own C{doWrite}, what
    the reactor would call next, with nothing to send.  Otherwise (data
    waiting, TLS, another transport) the reactor does it, after the data.
    """
    now = _plain_and_idle(transport)
    transport.loseWriteConnection()
    if now:
        # a failure is left to the reactor, which finds the transport
        # still registered for writing and gets it again
        transport.doWrite()


def close_now(transport: Any) -> bool:
    """
    End a connection now if it is one of Twisted's plain TCP connections
    with nothing waiting and no producer: the FIN at once (L{half_close_now}),
    then C{loseConnection}, which Twisted makes at once for a connection
    whose write side is shut (its C{connectionLost} runs before this
    returns).  C{loseConnection} alone would end it on the reactor's next
    turn: one more pass through the reactor, and the peer sees the FIN
    only then.

    @return: C{True} if the connection is over; C{False} if it is not (it
        was not such a connection and nothing was done, or the half-close
        failed and the reactor will find out): then the caller closes it
        as it would have.
    """
    if not _plain_and_idle(transport) or transport.producer is not None:
        return False
    half_close_now(transport)
    transport.loseConnection()
    return not transport.connected


# Twisted's own TCP connections, whose attributes _plain_and_idle reads
# directly (any other transport is looked at layer by layer, with care)
_TCP = frozenset({tcp.Server, tcp.Client})


def _plain_and_idle(connection: Any) -> bool:
    """
    C{connection} is one of Twisted's TCP connections, L{_plain} and
    L{_idle}, read directly; any other transport, or a missing attribute
    (another Twisted), means no.
    """
    if type(connection) not in _TCP:
        return False
    try:
        return (
            connection.TLS is False
            and connection._writeDisconnecting is False
            and bool(connection.connected)
            and not connection.disconnecting
            and connection._tempDataLen == 0
            and len(connection.dataBuffer) == connection.offset
        )
    except AttributeError:
        return False


def _send(layer: tcp.Connection, data: bytes) -> None:
    """
    A plain TCP connection with nothing waiting: straight into the kernel,
    as the transport's doWrite would (writeSomeData), without registering
    for writability first.  What does not fit waits in the transport for
    the reactor; an error, found by Twisted's own write path, ends the
    connection on the reactor's next turn.
    """
    sent = layer.writeSomeData(data)
    if type(sent) is int and 0 <= sent:
        if sent < len(data):
            layer.write(data[sent:])
        return
    layer.write(data)


def _plain(layer: tcp.Connection) -> bool:
    """
    Bytes given to this connection may go to its socket as they are: it
    is open for writing and carries no TLS started on it (its C{write}
    would encrypt first).  Twisted's attributes are read so that any doubt
    (one of them gone in another version) means no.
    """
    return (
        getattr(layer, "TLS", True) is False
        and getattr(layer, "_writeDisconnecting", True) is False
        and _open(layer)
    )


def set_high_water(transport: Any, size: int) -> None:
    """
    Make every file-descriptor layer of C{transport} pause its producer
    above C{size} buffered bytes.
    """
    for layer in _layers(transport):
        if hasattr(layer, "bufferSize"):
            layer.bufferSize = size


@implementer(IPullProducer)
class FlushWatcher:
    """
    Calls C{done} once everything written to C{transport} has left
    tunnelgw: registered as a pull producer, it is asked for more data each
    time the transport's buffer runs empty.
    """

    def __init__(self, transport: Any, done: Callable[[], None]) -> None:
        self._transport = transport
        self._done: Callable[[], None] | None = done

    def start(self) -> None:
        self._transport.registerProducer(self, False)

    def resumeProducing(self) -> None:
        if self._done is not None and pending_bytes(self._transport) == 0:
            done, self._done = self._done, None
            self._transport.unregisterProducer()
            done()

    def stopProducing(self) -> None:
        self._done = None


class Gate:
    """
    The reading of one transport, paused while any of several reasons
    holds it (each a bit: L{CLIENT_FULL}, L{BACKEND_FULL}, L{FLUSHING}) and
    resumed when the last one lets go.

    A transport's C{pauseProducing} and C{resumeProducing} do not count:
    two reasons to stop reading the client (its own write buffer is full;
    the backend's is) must not end with the first resume.
    """

    __slots__ = ("_transport", "holds")

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self.holds = 0

    @property
    def target(self) -> Any:
        return self._transport

    def hold(self, reason: int) -> None:
        held = self.holds
        self.holds = held | reason
        if not held:
            self._transport.pauseProducing()

    def release(self, reason: int) -> None:
        held = self.holds
        if held & reason:
            self.holds = held & ~reason
            if not self.holds:
                self._transport.resumeProducing()


CLIENT_FULL = 1
"""The client's write buffer is over its high-water mark."""
BACKEND_FULL = 2
"""The backend's write buffer is over its high-water mark."""
FLUSHING = 4
"""The tunnel is closing and lets the client's buffer drain."""
RATE = 8
"""The client sends faster than its byte rate (C{limits.max_bytes_per_second})."""


@implementer(IPushProducer)
class Valve:
    """
    Registered on one side's transport as its streaming producer: while that
    transport's write buffer is over its mark, C{reason} holds the L{Gate}s
    given (the other side's reading; for the client, its own reading too).

    Registering the other transport itself would pause it too, but when a
    transport's connection is lost Twisted calls C{stopProducing} on its
    producer, and a transport's C{stopProducing} is C{loseConnection}: the
    other side would be closed behind the tunnel's back (no close frame
    after a slow client's last bytes; no half-close of the backend).  Here
    C{stopProducing} does nothing: the tunnel decides how each side ends.
    """

    __slots__ = ("_reason", "gates")

    def __init__(self, reason: int, *gates: Gate) -> None:
        self._reason = reason
        self.gates = gates

    def pauseProducing(self) -> None:
        for gate in self.gates:
            gate.hold(self._reason)

    def resumeProducing(self) -> None:
        for gate in self.gates:
            gate.release(self._reason)

    def stopProducing(self) -> None:
        pass
