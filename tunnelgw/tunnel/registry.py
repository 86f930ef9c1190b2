"""
The open tunnels of one gateway.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

__all__ = ["TunnelRegistry"]


class TunnelRegistry:
    """
    The open tunnels of one gateway, for counts, drain and refresh (by the
    session id given to the client in the upgrade response).
    """

    def __init__(self) -> None:
        self.tunnels: set[Any] = set()
        self.by_session: dict[str, Any] = {}
        self._empty_waiters: list[defer.Deferred[None]] = []
        self.late: Any = None
        """Called with each tunnel once it has started (a reload judges those admitted under the configuration before it)."""

    def when_empty(self) -> defer.Deferred[None]:
        """
        Fires once no tunnel is open (at once if none is).
        """
        if not self.tunnels:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._empty_waiters.append(d)
        return d

    def __len__(self) -> int:
        return len(self.tunnels)

    def add(self, tunnel: Any) -> None:
        self.tunnels.add(tunnel)
        if tunnel.session_id:
            self.by_session[tunnel.session_id] = tunnel

    def started(self, tunnel: Any) -> None:
        if self.late is not None:
            self.late(tunnel)

    def discard(self, tunnel: Any) -> None:
        self.tunnels.discard(tunnel)
        self.by_session.pop(tunnel.session_id, None)
        if not self.tunnels:
            waiters, self._empty_waiters = self._empty_waiters, []
            for d in waiters:
                d.callback(None)
