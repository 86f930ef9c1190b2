"""
What tunnelgw relies on in txaio's behaviour (see L{tunnelgw._compat}).

Fix:
  - L{autobahn_seconds}: autobahn runs its timers (keepalive, the close
    handshake) through txaio's batched timer, which truncates each
    deadline to a whole second (C{int(now + delay)}): a timer can fire up
    to one second early, a 0.5 s one at once.  Adding that second makes
    each fire between the configured time and one second after it, never
    before.  C{tests/unit/test_compat.py} checks the truncation on txaio's
    real batched timer.
"""

from __future__ import annotations

__all__ = ["TIMER_GRANULARITY", "autobahn_seconds"]

TIMER_GRANULARITY = 1.0
"""The resolution of txaio's batched timer, in seconds."""


def autobahn_seconds(seconds: float) -> float:
    """
    The delay to give autobahn for a timer that must not fire before
    C{seconds} (0: no timer).
    """
    return seconds + TIMER_GRANULARITY if seconds > 0 else 0
