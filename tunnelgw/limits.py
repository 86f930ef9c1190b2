"""
Connection counting: global and per client address.

Every accepted TCP connection takes a L{Lease} at once and gives it back
when it closes, whether it stayed HTTP or became a tunnel.  The lease
remembers whether the connection was over a cap when it arrived; the
admission pipeline answers such a request with 503 (global cap) or 429
(per-address cap) instead of serving it.
"""

from __future__ import annotations

__all__ = ["ConnectionLimiter", "Lease"]


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
        self._per_host: dict[str, int] = {}

    def acquire(self, host: str) -> Lease:
        """
        Count a new connection from C{host}.
        """
        self.total += 1
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
