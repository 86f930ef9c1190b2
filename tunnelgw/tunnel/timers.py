"""
A tunnel's timers (idle, flush, linger, expiry, revalidate, rate), one
slot each, armed and cancelled by name; and the tunnel's states.
Mixed into L{tunnelgw.tunnel.relay.Tunnel}.
"""

from __future__ import annotations

import enum
import functools
from typing import Any

from tunnelgw.errors import CloseCode
from tunnelgw.tunnel.deadlines import deadlines

__all__ = ["State", "TIMERS", "TIMER_SLOTS", "TunnelPart", "TunnelTimers"]

TIMERS = ("idle", "flush", "linger", "expiry", "revalidate", "rate")
# the slot of each timer, named once rather than on every arm and cancel
TIMER_SLOTS = {name: f"_t_{name}" for name in TIMERS}


class State(enum.Enum):
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class TunnelPart:
    """
    What the parts of the tunnel (its mixins) read of it.  No slots of
    its own: the tunnel has them.
    """

    __slots__ = ()

    reactor: Any
    service: Any
    subject: Any
    conn_id: str
    via: str
    log: Any
    _state: Any

    _last_activity: float
    fail: Any  # the tunnel's own


class TunnelTimers(TunnelPart):
    __slots__ = ()

    # -- timers ---------------------------------------------------------------

    def _check_idle(self) -> None:
        timeout = self.service.limits.idle_timeout
        idle = self.reactor.seconds() - self._last_activity
        if idle >= timeout:
            self.fail(CloseCode.GOING_AWAY, f"idle for {timeout:g}s")
        else:
            self._schedule("idle", timeout - idle, self._check_idle)

    def _schedule(self, name: str, delay: float, f: Any, fixed: bool = False) -> None:
        """
        Arm timer C{name}; C{fixed}: C{delay} is a configured one (shared
        L{deadlines}), not computed.
        """
        slot = TIMER_SLOTS[name]
        self._cancel_slot(slot)
        if self._state is State.CLOSED:
            # nothing is left to time out; a timer would keep the finished
            # tunnel (and all it refers to) alive until it fired
            return
        fire = functools.partial(self._fire, slot, f)
        call = deadlines(self.reactor, delay).call(fire) if fixed else self.reactor.callLater(delay, fire)
        setattr(self, slot, call)

    def _fire(self, slot: str, f: Any) -> None:
        setattr(self, slot, None)
        f()

    def _cancel(self, name: str) -> None:
        self._cancel_slot(TIMER_SLOTS[name])

    def _cancel_slot(self, slot: str) -> None:
        call = getattr(self, slot)
        if call is not None:
            setattr(self, slot, None)
            if call.active():
                call.cancel()
