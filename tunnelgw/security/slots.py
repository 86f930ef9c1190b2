"""
A few slots for costly work (a password hash verified in a thread), with
two queues in front of them: work for a login from an address its user
logged in from before goes first.  Under a flood of wrong passwords the
first guesses of each address still cost a verification each (until the
throttle stops them); a known user does not wait behind them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

__all__ = ["Slots"]

_Entry = tuple["defer.Deferred[Any]", Callable[..., "defer.Deferred[Any]"], tuple[Any, ...]]


class Slots:
    """
    At most C{slots} pieces of work at once.  A waiting piece whose
    Deferred is cancelled leaves its queue and never runs; a running one
    keeps its slot until it ends (a thread cannot be stopped), so the bound
    holds whatever the clients do.
    """

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.busy = 0
        self._first: deque[_Entry] = deque()
        self._then: deque[_Entry] = deque()

    @property
    def waiting(self) -> int:
        return len(self._first) + len(self._then)

    def run(self, first: bool, work: Callable[..., defer.Deferred[Any]], *args: Any) -> defer.Deferred[Any]:
        """
        C{work(*args)} (which returns a Deferred) as soon as a slot is free;
        C{first}: ahead of the others that wait.
        """
        queue = self._first if first else self._then

        def cancel(d: defer.Deferred[Any]) -> None:
            try:
                queue.remove(entry)
            except ValueError:
                pass  # running: it keeps its slot until it ends

        d: defer.Deferred[Any] = defer.Deferred(cancel)
        entry: _Entry = (d, work, args)
        if self.busy < self.slots:
            self._start(entry)
        else:
            queue.append(entry)
        return d

    def _start(self, entry: _Entry) -> None:
        d, work, args = entry
        self.busy += 1
        try:
            started = work(*args)
        except Exception:
            started = defer.fail()

        def ended(result: Any) -> None:
            self.busy -= 1
            if self._first or self._then:
                self._start((self._first or self._then).popleft())
            if not d.called:  # else its client left
                if isinstance(result, Failure):
                    d.errback(result)
                else:
                    d.callback(result)

        started.addBoth(ended)
