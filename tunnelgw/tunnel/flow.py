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

from twisted.internet.interfaces import IPullProducer, IPushProducer
from zope.interface import implementer

from tunnelgw._compat.twisted import held_bytes, layers, release_connector
from tunnelgw._compat.writes import close_now, half_close_now, write_now

__all__ = [
    "pending_bytes",
    "release_connector",
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


pending_bytes = held_bytes
"""
Bytes written to a transport that have not reached the kernel yet, through
every layer (TLS buffers, TCP write buffer): Twisted has no public accessor
for them (L{tunnelgw._compat.twisted.held_bytes}); a transport without
them counts as 0.
"""


def set_high_water(transport: Any, size: int) -> None:
    """
    Make every file-descriptor layer of C{transport} pause its producer
    above C{size} buffered bytes.
    """
    for layer in layers(transport):
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
