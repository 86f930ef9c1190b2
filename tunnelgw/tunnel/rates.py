"""
A client's message and byte rates, per tunnel.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ClientRate"]


class ClientRate:
    """
    Two token buckets for what one client sends: messages (refilled at
    C{limits.max_messages_per_second}, holding C{message_burst}) and bytes
    (C{max_bytes_per_second}, holding C{byte_burst}); 0 turns one off.
    A tunnel's own, not an L{tunnelgw.interfaces.ILimitStore}'s: a tunnel
    lives in one process, and this is asked once a message.
    """

    __slots__ = ("_limits", "_when", "_messages", "_bytes")

    def __init__(self, limits: Any, now: float) -> None:
        self._limits = limits
        self._when = now
        self._messages = float(limits.message_burst)
        self._bytes = float(limits.byte_burst)

    def spend(self, now: float, size: int) -> float:
        """
        Count one message of C{size} bytes.

        @return: C{-1} if the messages are over their rate beyond the burst
            (the tunnel closes); otherwise the seconds the client should
            not be read for its bytes to be within their rate (C{0}: none).
        """
        limits = self._limits
        elapsed = now - self._when
        self._when = now
        per_second = limits.max_messages_per_second
        if per_second:
            messages = min(float(limits.message_burst), self._messages + elapsed * per_second) - 1
            if messages < 0:
                return -1
            self._messages = messages
        per_second = limits.max_bytes_per_second
        if per_second:
            available = min(float(limits.byte_burst), self._bytes + elapsed * per_second) - size
            self._bytes = available
            if available < 0:
                return -available / per_second
        return 0.0
