"""
Timers that all run for the same delay, on one reactor timer.

A gateway arms several timers per connection (the request-head deadline,
the lingers of a closing tunnel), almost all cancelled before they fire.
Each C{callLater} goes into the reactor's heap, ordered by Python-level
comparisons, and stays there, cancelled, until the heap is rebuilt: a few
microseconds a timer, every time.  Timers of one fixed delay expire in the
order they were armed, so they can wait in an ordered dictionary instead
(armed: appended; cancelled: removed, at once) behind a single reactor
timer set for the earliest of them.  They fire at the same moments as
C{callLater} would make them fire (should the clock be set back, a timer
armed after that waits for the ones armed before it).
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from twisted.internet import error
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from tunnelgw.logs import Logger

__all__ = ["Deadline", "Deadlines", "deadlines", "pending_on"]

# A deadline is due when the clock reads within this of it: the reactor
# timer for it was set by subtraction, and floats may make it fire a hair
# before the deadline it was set for.
_EPSILON = 1e-6


class Deadline:
    """
    One armed timer: C{cancel} and C{active} as an L{IDelayedCall}'s.
    """

    __slots__ = ("_deadlines", "time", "_f", "called", "cancelled")

    def __init__(self, deadlines: Deadlines, time: float, f: Callable[[], object]) -> None:
        self._deadlines: Deadlines | None = deadlines
        self.time = time
        self._f: Callable[[], object] | None = f
        self.called = False
        self.cancelled = False

    def active(self) -> bool:
        return not (self.called or self.cancelled)

    def cancel(self) -> None:
        if self.cancelled:
            raise error.AlreadyCancelled()
        if self.called:
            raise error.AlreadyCalled()
        self.cancelled = True
        deadlines, self._deadlines, self._f = self._deadlines, None, None
        if deadlines is not None:
            deadlines.forget(self)

    def fire(self) -> None:
        f, self._f, self._deadlines = self._f, None, None
        self.called = True
        if f is not None:
            f()


class Deadlines:
    """
    The timers of one delay on one clock.
    """

    log = Logger()

    def __init__(self, clock: IReactorTime, delay: float) -> None:
        self._clock = clock
        self.delay = delay
        self._pending: OrderedDict[Deadline, None] = OrderedDict()
        self._timer: IDelayedCall | None = None
        self._expiring = False

    def __len__(self) -> int:
        return len(self._pending)

    def call(self, f: Callable[[], object]) -> Deadline:
        """
        Call C{f} once C{delay} seconds have passed, unless cancelled.
        """
        deadline = Deadline(self, self._clock.seconds() + self.delay, f)
        self._pending[deadline] = None
        if self._timer is None and not self._expiring:
            self._timer = self._clock.callLater(self.delay, self._expire)
        return deadline

    def forget(self, deadline: Deadline) -> None:
        # The reactor timer stays set for the cancelled one's time: it then
        # finds nothing due and is set again for the earliest left.
        self._pending.pop(deadline, None)

    def _expire(self) -> None:
        self._timer = None
        now = self._clock.seconds()
        pending = self._pending
        self._expiring = True  # what the callbacks arm waits for the loop
        try:
            while pending:
                deadline = next(iter(pending))
                if deadline.time - now > _EPSILON:
                    self._timer = self._clock.callLater(deadline.time - now, self._expire)
                    return
                del pending[deadline]
                try:
                    deadline.fire()
                except Exception:
                    self.log.failure("a timer of {delay}s failed", delay=self.delay)
        finally:
            self._expiring = False


def pending_on(clock: IReactorTime) -> int:
    """
    How many timers are armed on C{clock} through L{deadlines} (for tests).
    """
    return sum(len(queue) for queue in _BY_CLOCK.get(clock, {}).values())


_BY_CLOCK: weakref.WeakKeyDictionary[Any, dict[float, Deadlines]] = weakref.WeakKeyDictionary()


def deadlines(clock: IReactorTime, delay: float) -> Deadlines:
    """
    The shared L{Deadlines} of C{delay} seconds on C{clock}: for delays
    fixed by configuration (a handful per gateway), never for computed ones.
    """
    by_delay = _BY_CLOCK.get(clock)
    if by_delay is None:
        by_delay = _BY_CLOCK[clock] = {}
    queue = by_delay.get(delay)
    if queue is None:
        queue = by_delay[delay] = Deadlines(clock, delay)
    return queue
