"""
Bounds on logins, ahead of the login modules (C{[gateway.logins]}):

  - failed-login throttling: a login that presents credentials (an
    C{Authorization} header) is counted against its client address and
    its user name before it runs, and taken back if it succeeds; past the
    limit in the window, logins from that address (or for that user) are
    refused with 429 and C{Retry-After} until the window ends, without
    running a module (no password hash is computed for them).  An address
    a user logged in from is familiar to that user for C{familiar_for}
    seconds: failures in the user's name from elsewhere do not lock the
    user out of it (as "smart lockout" does);
  - a bounded number of logins waiting for an asynchronous answer (a
    password hash in a thread, an HTTP call): beyond C{max_pending}, 503
    with C{Retry-After}, never a growing queue.

Counts live in an L{ILimitStore}, so that several instances can share them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

from tunnelgw.config.model import LoginLimits
from tunnelgw.interfaces import ILimitStore
from tunnelgw.logs import Logger

__all__ = ["Attempt", "LoginGuard", "LoginRefused", "NOTHING"]


@dataclass(frozen=True)
class Attempt:
    """
    A login as the guard counted it: the keys it was counted against, the
    user it claimed, the address it came from.
    """

    keys: tuple[str, ...]
    user: str | None = None
    address: str = ""
    familiar: bool = False
    """C{user} logged in from C{address} before (within C{familiar_for})."""


NOTHING = Attempt(())


def _familiar(user: str, address: str) -> str:
    return f"familiar:{user}@{address}"


class LoginRefused(Exception):
    """
    The guard refuses a login before it runs: C{status} (429 or 503),
    C{reason} for the client, C{retry_after} in whole seconds.
    """

    def __init__(self, status: int, reason: str, retry_after: int) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after


class Waiting:
    """
    How many logins wait for an asynchronous answer: one count per
    gateway, which the guard of each configuration shares, so that a
    reload (a new guard) does not let C{max_pending} more in while the
    logins begun before it still wait.
    """

    count = 0


class LoginGuard:
    """
    See the module docstring.
    """

    log = Logger()

    def __init__(self, limits: LoginLimits, store: ILimitStore, waiting: Waiting | None = None) -> None:
        self.limits = limits
        self.store = store
        self.waiting = Waiting() if waiting is None else waiting

    @property
    def pending(self) -> int:
        """The logins that wait now (under every configuration's guard)."""
        return self.waiting.count

    def before(self, request: Any, callbacks: Any) -> Attempt:
        """
        Count the login of C{request} in advance, if it presents
        credentials.

        @return: what it was counted against (give it to L{succeeded} or
            L{pending_login}).
        @raise LoginRefused: (429) its address or user is over the limit.
        """
        if not request.headers.get("authorization"):
            return NOTHING
        limits = self.limits
        address = request.peer_host
        keys = [("address", f"addr:{address}", limits.max_failures_per_address)]
        user = callbacks.basic[0] if callbacks.basic else None
        familiar = user is not None and self.store.peek(_familiar(user, address))[0] > 0
        if user is not None and not familiar:
            keys.append(("user", f"user:{user}", limits.max_failures_per_user))
        for kind, key, limit in keys:
            count, left = self.store.peek(key)
            if count >= limit:
                retry_after = max(1, math.ceil(left))
                self.log.info(
                    "login {conn_id} from {peer} for {principal}: throttled, {count} failed logins"
                    " by {kind} in {window:g}s; retry after {retry_after}s",
                    event="login_throttled",
                    conn_id=request.conn_id,
                    transport=request.transport,
                    peer=address,
                    principal=user,
                    kind=kind,
                    count=count,
                    window=limits.failure_window,
                    retry_after=retry_after,
                )
                raise LoginRefused(429, "too many failed logins; try again later", retry_after)
        for _, key, _ in keys:
            self.store.hit(key, limits.failure_window)
        return Attempt(tuple(key for _, key, _ in keys), user, address, familiar)

    def succeeded(self, attempt: Attempt, subject: Any = None) -> None:
        """
        The login counted as C{attempt} succeeded (as C{subject}): it is
        not a failure, and its address becomes familiar to its user.
        """
        for key in attempt.keys:
            self.store.refund(key)
        user = attempt.user
        # the name the login proved, not only the one it claimed
        if user is not None and getattr(subject, "user", None) == user and self.limits.familiar_for > 0:
            self.store.hit(_familiar(user, attempt.address), self.limits.familiar_for)

    def pending_login(self, d: defer.Deferred[Any], request: Any, attempt: Attempt) -> defer.Deferred[Any]:
        """
        A login answers asynchronously with C{d}: it waits, in bounded
        numbers, and its outcome settles its count.

        @raise LoginRefused: (503) C{max_pending} logins wait already; C{d}
            is cancelled (a password hash that has not started never will).
        """
        if self.pending >= self.limits.max_pending:
            self.succeeded(attempt)  # not the client's failure
            d.addErrback(lambda f: None)
            d.cancel()
            self.log.warn(
                "login {conn_id} from {peer}: {pending} logins wait already; refused",
                event="login_busy",
                conn_id=request.conn_id,
                transport=request.transport,
                peer=request.peer_host,
                pending=self.pending,
            )
            raise LoginRefused(503, "too many logins in progress; try again later", 1)
        waiting = self.waiting
        waiting.count += 1

        def settled(result: Any) -> Any:
            waiting.count -= 1
            if not isinstance(result, Failure):
                self.succeeded(attempt, result)
            return result

        return d.addBoth(settled)
