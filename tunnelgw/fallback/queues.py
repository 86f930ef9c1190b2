"""
What makes a fallback session resumable: each direction's messages are
numbered (L{tunnelgw.fallback.framing}), the sender keeps what was not
acknowledged (L{Outbox}, bounded: over its mark the tunnel stops reading
the other side), and the receiver takes each number once, in order
(L{Inbox}).  A stream cut mid-message, a POST answered but its answer
lost, or one sent twice: each message arrives exactly once, in order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from tunnelgw.fallback.framing import MESSAGES, Frame, encode

__all__ = ["Inbox", "Outbox"]


class Outbox:
    """
    The messages one side sent and the other has not acknowledged yet,
    numbered from 1.  C{full} is called when the bytes kept rise above
    C{high_water}, C{drained} when they fall back to it or below.
    """

    def __init__(
        self,
        high_water: int,
        full: Callable[[], None] = lambda: None,
        drained: Callable[[], None] = lambda: None,
    ) -> None:
        self.high_water = high_water
        self._full = full
        self._drained = drained
        self._kept: deque[tuple[int, bytes]] = deque()
        self.bytes = 0
        self.last = 0
        """The number of the last message pushed."""
        self.acked = 0
        self._over = False

    @property
    def over(self) -> bool:
        """The bytes kept are above the high-water mark."""
        return self._over

    def push(self, kind: int, payload: bytes) -> bytes:
        """Number a message, keep it until acknowledged; its frame."""
        assert kind in MESSAGES
        self.last += 1
        frame = encode(kind, self.last, payload)
        self._kept.append((self.last, frame))
        self.bytes += len(frame)
        if not self._over and self.bytes > self.high_water:
            self._over = True
            self._full()
        return frame

    def ack(self, seq: int) -> None:
        """The other side has every message up to C{seq}."""
        if seq <= self.acked:
            return
        seq = min(seq, self.last)
        kept = self._kept
        while kept and kept[0][0] <= seq:
            self.bytes -= len(kept.popleft()[1])
        self.acked = seq
        if self._over and self.bytes <= self.high_water:
            self._over = False
            self._drained()

    def since(self, seq: int) -> list[bytes]:
        """The frames after message C{seq}, to send (again) on a new stream."""
        self.ack(seq)
        return [frame for number, frame in self._kept if number > seq]


class Inbox:
    """
    The messages one side receives: each number once, in order; a repeat
    (a POST sent again) is dropped, and what follows a gap waits to be sent
    again.
    """

    def __init__(self) -> None:
        self.last = 0
        """The number of the last message taken: what to acknowledge."""

    def take(self, frames: list[Frame]) -> list[Frame]:
        """
        The new messages among C{frames}, in order: a repeat is dropped,
        and so is everything after a gap (a message whose predecessor has
        not come): the sender, told C{last}, sends again from there.
        """
        new: list[Frame] = []
        for frame in frames:
            if frame.kind not in MESSAGES or frame.seq <= self.last:
                continue  # not a message, or had it already
            if frame.seq != self.last + 1:
                break
            self.last = frame.seq
            new.append(frame)
        return new
