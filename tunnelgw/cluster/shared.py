"""
The limit store of an instance in a cluster (L{ILimitStore}): the counts
of failed logins per address and per user (and the addresses a user is
familiar from) are shared through Redis, answered at once from this
instance's own counts plus what Redis last said the others counted.

Each event counted here is added to its Redis counter as it happens (an
C{INCRBY} that also sets the counter's lifetime to the window's, in one
script); the answer, the count cluster-wide, updates what this instance
knows of the others'.  So a guesser spreading over instances is counted
by each after one answer's delay: at most one guess more per instance
than the limit.  Token buckets (handshakes per address) and held places
stay this process's: places across instances are the engine's leases
(L{tunnelgw.cluster.redis.RedisEngine.hold}), and a handshake rate is
each instance's.  While Redis is unreachable, the counts are this
instance's alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from zope.interface import implementer

from tunnelgw.interfaces import ILimitStore
from tunnelgw.limits import MemoryLimitStore

__all__ = ["SharedLimitStore"]

MAX_KEYS = 100_000


@implementer(ILimitStore)
class SharedLimitStore:
    def __init__(self, local: MemoryLimitStore, engine: Callable[[], Any], clock: Any) -> None:
        self._local = local
        self._engine = engine
        self._clock = clock
        self._others: dict[str, tuple[int, float]] = {}
        """Per key: what the other instances counted, as of Redis' last answer, and until when."""

    def _of_others(self, key: str) -> int:
        known = self._others.get(key)
        if known is None:
            return 0
        count, until = known
        if until <= self._clock.seconds():
            del self._others[key]
            return 0
        return count

    def _tell(self, key: str, amount: int, window: float) -> None:
        add = getattr(self._engine(), "add", None)
        if add is None:
            return
        d = add(key, amount, window)
        if d is None:
            return

        def learnt(total: Any) -> None:
            mine, left = self._local.peek(key)
            if left <= 0:
                return
            if len(self._others) >= MAX_KEYS and key not in self._others:
                self._others.pop(next(iter(self._others)))
            self._others[key] = (max(0, int(total) - mine), self._clock.seconds() + left)

        d.addCallbacks(learnt, lambda f: None)

    # -- ILimitStore -------------------------------------------------------------

    def hit(self, key: str, window: float) -> tuple[int, float]:
        count, left = self._local.hit(key, window)
        self._tell(key, 1, window)
        return count + self._of_others(key), left

    def peek(self, key: str) -> tuple[int, float]:
        count, left = self._local.peek(key)
        others = self._of_others(key)
        if others and left <= 0:
            left = self._others[key][1] - self._clock.seconds()
        return count + others, left

    def refund(self, key: str) -> None:
        self._local.refund(key)
        _, left = self._local.peek(key)
        self._tell(key, -1, max(left, 1.0))

    def take(self, key: str, rate: float, burst: float, cost: float = 1.0) -> float:
        return self._local.take(key, rate, burst, cost)

    def acquire(self, key: str, limit: int) -> bool:
        return self._local.acquire(key, limit)

    def release(self, key: str) -> None:
        self._local.release(key)

    def held(self, key: str) -> int:
        return self._local.held(key)
