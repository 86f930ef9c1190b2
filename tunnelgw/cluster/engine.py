"""
The engine instances share.  L{LocalEngine}: one process alone
(revocations in its memory).  L{tunnelgw.cluster.redis.RedisEngine}:
several, through Redis.

What every engine does for the gateway:
  - C{admitting()}: may a new admission go ahead (raises a 503 L{Refusal}
    while the engine cannot vouch for what it knows);
  - C{revoking(subject)}: the revocation in force that names a subject;
  - C{revoke(revocation)}: put one in force everywhere; each instance ends
    the tunnels it names (L{end_matching});
  - C{hold(wanted, owner)}: a tunnel's places (tunnels per user) across
    instances, as leases;
  - C{tunnels()}: the open tunnels, cluster-wide, as JSON-ready dicts;
  - C{fallback_tag}, C{fallback_owner(tag)}: the tag this instance puts
    in its fallback sessions' ids, and where the instance of another tag
    is reached (C{None}: nowhere; one process has no other).

Redis data (every key under C{prefix}):
  - C{PREFIX:revocations}: a sorted set, each revocation's JSON scored by
    its end; C{PUBLISH PREFIX:revocations JSON} tells every instance at once;
  - C{PREFIX:instances}: a sorted set of instance names scored by when
    their lease ends; C{PREFIX:tunnels:INSTANCE}: the JSON list of its
    tunnels, expiring with the lease (renewed every third of C{lease_ttl});
  - C{PREFIX:fallback:TAG}: the C{advertise} URL of the instance whose
    fallback sessions' ids begin with C{TAG.}, expiring with its lease;
  - C{PREFIX:lease:KEY} (C{KEY}: C{tunnels:USER}, C{tunnels:SERVICE:USER}):
    a sorted set of C{INSTANCE:CONN_ID} members scored by when each lease
    ends, renewed with the heartbeat: a dead instance's leases end by
    themselves within C{lease_ttl}.

While Redis is unreachable, open tunnels stay; new admissions go on for
C{grace} seconds, then are refused with 503 (C{when_down = "refuse"}) or
admitted on this instance's knowledge alone (C{"local"}).  Back on Redis,
an instance reads every revocation in force before it admits anyone.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

from tunnelgw.cluster.revocations import Revocation, Revocations, end_matching
from tunnelgw.errors import Refusal
from tunnelgw.logs import Logger

__all__ = ["LocalEngine", "tunnel_row"]

MAX_TUNNELS_LISTED = 100_000


def tunnel_row(tunnel: Any, instance: str) -> dict[str, Any]:
    """What the tunnel list says of one tunnel."""
    return {
        "instance": instance,
        "conn_id": tunnel.conn_id,
        "session": tunnel.session_id,
        "user": tunnel.subject.principal,
        "service": tunnel.service.name,
        "subprotocol": tunnel.subprotocol,
        "origin": tunnel.origin,
        "peer": tunnel.peer,
        "bytes_up": tunnel.bytes_up,
        "bytes_down": tunnel.bytes_down,
        "since": tunnel.started,
        "last_activity": tunnel.last_activity,
    }


class LocalEngine:
    """One process: revocations in its memory, its own tunnels."""

    log = Logger()
    state = "local"

    def __init__(self, reactor: Any, registry: Any, instance: str = "local") -> None:
        self.reactor = reactor
        self.registry = registry
        self.instance = instance
        self.revocations = Revocations(reactor)

    def start(self) -> None:
        pass

    def stop(self) -> defer.Deferred[None]:
        return defer.succeed(None)

    def admitting(self) -> None:
        pass

    fallback_tag = ""

    def fallback_owner(self, tag: str) -> defer.Deferred[str | None]:
        return defer.succeed(None)

    def revoking(self, subject: Any) -> Revocation | None:
        return self.revocations.revoking(subject)

    def hold(self, wanted: tuple[tuple[str, int], ...], owner: str) -> defer.Deferred[Any] | None:
        """
        Hold C{wanted} (keys and their limits) across instances for the
        tunnel C{owner}: a Deferred of a lease (with C{release()}), or of
        C{None} when a limit is reached elsewhere; C{None} when nothing is
        shared (one process; or Redis unreachable, the grace going on).
        """
        return None

    def revoke(self, revocation: Revocation) -> defer.Deferred[Revocation]:
        try:
            self.apply(revocation)
        except ValueError as e:
            return defer.fail(Refusal(503, str(e)))
        return defer.succeed(revocation)

    def apply(self, revocation: Revocation) -> int:
        """Put C{revocation} in force here: end the tunnels it names."""
        if revocation.until <= self.reactor.seconds() or not self.revocations.add(revocation):
            return 0
        self.log.info(
            "revocation {kind} {value} until {until} ({reason})",
            event="revocation",
            kind=revocation.kind,
            value=revocation.value,
            until=revocation.until,
            revocation=revocation.id,
            reason=revocation.reason,
            by=revocation.by,
            instance=self.instance,
        )
        return end_matching(self.registry.tunnels, revocation, self.instance)

    def tunnels(self) -> defer.Deferred[list[dict[str, Any]]]:
        return defer.succeed(self.local_tunnels())

    def local_tunnels(self) -> list[dict[str, Any]]:
        return [tunnel_row(t, self.instance) for t in list(self.registry.tunnels)[:MAX_TUNNELS_LISTED]]
