"""
Connection counting: global and per client address.

The counts the abuse limits keep (login failures, rates, places held by
user) live in an L{ILimitStore}; L{MemoryLimitStore} is one process's.

Every accepted TCP connection takes a L{Lease} at once and gives it back
when it closes, whether it stayed HTTP or became a tunnel.  The lease
remembers whether the connection was over a cap when it arrived; the
admission pipeline answers such a request with 503 (global cap) or 429
(per-address cap) instead of serving it.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from tunnelgw.interfaces import ILimitStore

__all__ = ["ConnectionLimiter", "Lease", "MemoryLimitStore", "Places", "hold"]


class Lease:
    """
    One connection's place in the counts.
    """

    __slots__ = ("_limiter", "host", "over_global", "over_address", "_released")

    def __init__(self, limiter: ConnectionLimiter, host: str, over_global: bool, over_address: bool) -> None:
        self._limiter = limiter
        self.host = host
        self.over_global = over_global
        self.over_address = over_address
        self._released = False

    def release(self) -> None:
        """
        Give the place back; later calls do nothing.
        """
        if not self._released:
            self._released = True
            self._limiter._release(self.host)


class ConnectionLimiter:
    """
    Counts open connections, in all and per client address.
    """

    def __init__(self, max_connections: int, max_per_address: int) -> None:
        self.max_connections = max_connections
        self.max_per_address = max_per_address
        self.total = 0
        self.accepted = 0
        """Connections counted since the start."""
        self._per_host: dict[str, int] = {}

    def acquire(self, host: str) -> Lease:
        """
        Count a new connection from C{host}.
        """
        self.total += 1
        self.accepted += 1
        count = self._per_host.get(host, 0) + 1
        self._per_host[host] = count
        return Lease(self, host, self.total > self.max_connections, count > self.max_per_address)

    def count(self, host: str) -> int:
        return self._per_host.get(host, 0)

    def _release(self, host: str) -> None:
        self.total -= 1
        count = self._per_host[host] - 1
        if count:
            self._per_host[host] = count
        else:
            del self._per_host[host]


@implementer(ILimitStore)
class MemoryLimitStore:
    """
    The counts of one process, in dicts bounded to C{max_keys} keys each:
    beyond that, the key whose window or bucket was made first goes (its
    window is the nearest to its end; a bucket gone is a full one again).
    Held places are never dropped: each stands for an open connection or
    tunnel, which are bounded themselves.
    """

    def __init__(self, clock: IReactorTime, max_keys: int = 100_000) -> None:
        self._clock = clock
        self.max_keys = max_keys
        self._windows: dict[str, list[float]] = {}  # key -> [count, end]
        self._buckets: dict[str, list[float]] = {}  # key -> [tokens, when]
        self._held: dict[str, int] = {}

    def _window(self, key: str, now: float) -> list[float] | None:
        window = self._windows.get(key)
        if window is not None and window[1] <= now:
            del self._windows[key]
            return None
        return window

    def hit(self, key: str, window: float) -> tuple[int, float]:
        now = self._clock.seconds()
        current = self._window(key, now)
        if current is None:
            _make_room(self._windows, self.max_keys)
            current = self._windows[key] = [0, now + window]
        current[0] += 1
        return int(current[0]), current[1] - now

    def peek(self, key: str) -> tuple[int, float]:
        now = self._clock.seconds()
        current = self._window(key, now)
        if current is None:
            return 0, 0.0
        return int(current[0]), current[1] - now

    def refund(self, key: str) -> None:
        current = self._window(key, self._clock.seconds())
        if current is not None and current[0] > 0:
            current[0] -= 1

    def take(self, key: str, rate: float, burst: float, cost: float = 1.0) -> float:
        now = self._clock.seconds()
        bucket = self._buckets.get(key)
        if bucket is None:
            _make_room(self._buckets, self.max_keys)
            bucket = self._buckets[key] = [burst, now]
        tokens = min(burst, bucket[0] + (now - bucket[1]) * rate)
        bucket[1] = now
        if tokens >= cost:
            bucket[0] = tokens - cost
            return 0.0
        bucket[0] = tokens
        return (cost - tokens) / rate if rate > 0 else float("inf")

    def acquire(self, key: str, limit: int) -> bool:
        count = self._held.get(key, 0)
        if count >= limit:
            return False
        self._held[key] = count + 1
        return True

    def release(self, key: str) -> None:
        count = self._held.get(key, 0) - 1
        if count > 0:
            self._held[key] = count
        else:
            self._held.pop(key, None)

    def held(self, key: str) -> int:
        return self._held.get(key, 0)


def _make_room(table: dict[str, Any], max_keys: int) -> None:
    """
    Drop the oldest keys of C{table} until one more fits.
    """
    while len(table) >= max_keys:
        del table[next(iter(table))]


class Places:
    """
    Places held in an L{ILimitStore} (a tunnel's, against its user's caps),
    given back once with L{release}; C{wanted} says which, with their
    limits; what else holds them (an engine's leases across instances) is
    released with them.
    """

    __slots__ = ("_store", "_keys", "wanted", "_also", "_released")

    def __init__(
        self, store: ILimitStore, keys: tuple[str, ...], wanted: tuple[tuple[str, int], ...] = ()
    ) -> None:
        self._store = store
        self._keys = keys
        self.wanted = wanted
        self._also: list[Any] = []
        self._released = False

    def also(self, held: Any) -> None:
        """C{held} (with a C{release()}) is released with these places (at once if they are already)."""
        if self._released:
            held.release()
        else:
            self._also.append(held)

    def release(self) -> None:
        self._released = True
        keys, self._keys = self._keys, ()
        for key in keys:
            self._store.release(key)
        also, self._also = self._also, []
        for held in also:
            held.release()


def hold(store: ILimitStore, wanted: tuple[tuple[str, int], ...]) -> Places | None:
    """
    One place of each C{(key, limit)}, all or none.

    @return: the places, or C{None} (nothing held) if a key is at its limit.
    """
    held: list[str] = []
    for key, limit in wanted:
        if not store.acquire(key, limit):
            for taken in held:
                store.release(taken)
            return None
        held.append(key)
    return Places(store, tuple(held), wanted)
