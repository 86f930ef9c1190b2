"""
Revocations: a user, a role, a tunnel's session id or a token's id
(C{jti}) refused for a while.  While one is in force, every tunnel it
matches is ended (1008, after its protocol's goodbye) and every new
admission it matches is refused (403).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from tunnelgw.errors import CloseCode
from tunnelgw.logs import Logger

__all__ = ["KINDS", "MAX_REVOCATIONS", "Revocation", "Revocations", "end_matching"]

KINDS = ("user", "role", "session", "jti")
MAX_REVOCATIONS = 100_000
"""Revocations in force at once, at most (a new one beyond is refused)."""
MAX_VALUE = 256


@dataclass(frozen=True)
class Revocation:
    """One revocation: C{kind} and C{value} say whom, C{until} till when (epoch seconds)."""

    kind: str
    value: str
    until: float
    id: str = ""
    reason: str = ""
    by: str = ""

    @classmethod
    def new(
        cls, kind: str, value: str, seconds: float, now: float, reason: str = "", by: str = ""
    ) -> Revocation:
        """
        @raise ValueError: an unknown kind, an empty or too long value, a
            duration that is not a positive number.
        """
        revocation = cls(kind, value, now + seconds, uuid.uuid4().hex, reason[:MAX_VALUE], by[:MAX_VALUE])
        revocation.check()
        if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds > 0):
            raise ValueError("the duration must be a positive number of seconds")
        return revocation

    def check(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}")
        if not isinstance(self.value, str) or not 0 < len(self.value) <= MAX_VALUE:
            raise ValueError(f"the value must be a string of 1 to {MAX_VALUE} characters")
        if not isinstance(self.until, (int, float)) or not math.isfinite(self.until):
            raise ValueError("until must be a number")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> Revocation:
        """@raise ValueError: not a revocation."""
        if not isinstance(data, dict):
            raise ValueError("a revocation is a JSON object")
        try:
            revocation = cls(
                str(data["kind"]),
                str(data["value"]),
                float(data["until"]),
                str(data.get("id", "")),
                str(data.get("reason", "")),
                str(data.get("by", "")),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"not a revocation: {e}") from None
        revocation.check()
        return revocation

    def matches(self, subject: Any, session_id: str = "") -> bool:
        kind, value = self.kind, self.value
        if kind == "user":
            return subject.user == value
        if kind == "role":
            return value in subject.roles
        if kind == "session":
            return session_id == value
        return subject.attributes.get("jti") == value


class Revocations:
    """
    The revocations in force as this instance knows them, by whom they
    name: a check costs a look-up per user, role, token id and session.
    """

    def __init__(self, clock: Any, limit: int = MAX_REVOCATIONS) -> None:
        self._clock = clock
        self._limit = limit
        self._by: dict[tuple[str, str], Revocation] = {}

    def __len__(self) -> int:
        return len(self._by)

    def add(self, revocation: Revocation) -> bool:
        """
        @return: whether it changes anything (a new one, or a longer one).
        @raise ValueError: the limit is reached.
        """
        key = (revocation.kind, revocation.value)
        known = self._by.get(key)
        if known is not None and known.until >= revocation.until:
            return False
        if known is None and len(self._by) >= self._limit:
            self.prune()
            if len(self._by) >= self._limit:
                raise ValueError(f"{self._limit} revocations are in force already")
        self._by[key] = revocation
        return True

    def prune(self) -> None:
        now = self._clock.seconds()
        for key in [k for k, r in self._by.items() if r.until <= now]:
            del self._by[key]

    def active(self) -> list[Revocation]:
        self.prune()
        return sorted(self._by.values(), key=lambda r: r.until)

    def revoking(self, subject: Any, session_id: str = "") -> Revocation | None:
        """The revocation in force that names C{subject} (or its session), if any."""
        if not self._by:
            return None
        candidates = [("user", subject.user or ""), ("jti", str(subject.attributes.get("jti") or ""))]
        candidates += [("role", role) for role in subject.roles]
        if session_id:
            candidates.append(("session", session_id))
        now = self._clock.seconds()
        for key in candidates:
            revocation = self._by.get(key)
            if revocation is not None and revocation.until > now:
                return revocation
        return None


_log = Logger()


def end_matching(
    tunnels: Any, revocation: Revocation, instance: str, ended: Callable[[Any], None] = lambda t: None
) -> int:
    """
    End every tunnel of C{tunnels} that C{revocation} names (its
    protocol's goodbye, then 1008), or make it view-only where its service
    says so (RFB's C{on_revoke}); an audit event for each
    (C{event=tunnel_revoked}, C{by=revocation}, C{outcome}).

    @return: how many.
    """
    count = 0
    for tunnel in list(tunnels):
        if not revocation.matches(tunnel.subject, tunnel.session_id):
            continue
        count += 1
        outcome = tunnel.revoked(CloseCode.POLICY_VIOLATION, "revoked")
        _log.info(
            "tunnel {conn_id} of {principal} revoked ({kind} {value}), {outcome}: {reason}",
            event="tunnel_revoked",
            by="revocation",
            outcome=outcome,
            conn_id=tunnel.conn_id,
            transport=tunnel.via,
            principal=tunnel.subject.principal,
            service=tunnel.service.name,
            kind=revocation.kind,
            value=revocation.value,
            revocation=revocation.id,
            reason=revocation.reason,
            instance=instance,
        )
        ended(tunnel)
    return count
