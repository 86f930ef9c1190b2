"""
The engine instances share.  L{LocalEngine}: one process alone
(revocations in its memory).  L{RedisEngine}: several, through Redis.

What every engine does for the gateway:
  - C{admitting()}: may a new admission go ahead (raises a 503 L{Refusal}
    while the engine cannot vouch for what it knows);
  - C{revoking(subject)}: the revocation in force that names a subject;
  - C{revoke(revocation)}: put one in force everywhere; each instance ends
    the tunnels it names (L{end_matching});
  - C{tunnels()}: the open tunnels, cluster-wide, as JSON-ready dicts.

Redis data (every key under C{prefix}):
  - C{PREFIX:revocations}: a sorted set, each revocation's JSON scored by
    its end; C{PUBLISH PREFIX:revocations JSON} tells every instance at once;
  - C{PREFIX:instances}: a sorted set of instance names scored by when
    their lease ends; C{PREFIX:tunnels:INSTANCE}: the JSON list of its
    tunnels, expiring with the lease (renewed every third of C{lease_ttl}).

While Redis is unreachable, open tunnels stay; new admissions go on for
C{grace} seconds, then are refused with 503 (C{when_down = "refuse"}) or
admitted on this instance's knowledge alone (C{"local"}).  Back on Redis,
an instance reads every revocation in force before it admits anyone.
"""

from __future__ import annotations

import json
from typing import Any

import hyperlink

from twisted.internet import defer, task
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.ssl import Certificate, optionsForClientTLS, platformTrust

from tunnelgw.cluster.revocations import Revocation, Revocations, end_matching
from tunnelgw.config.model import ClusterConfig
from tunnelgw.errors import Refusal
from tunnelgw.logs import Logger

__all__ = ["LocalEngine", "RedisEngine", "tunnel_row"]

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

    def revoking(self, subject: Any) -> Revocation | None:
        return self.revocations.revoking(subject)

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


def redis_endpoint(reactor: Any, config: ClusterConfig) -> Any:
    """The client endpoint of C{config.redis}: TLS verified for C{rediss://}."""
    url = hyperlink.URL.from_text(config.redis)
    endpoint: Any = HostnameEndpoint(reactor, url.host, url.port or 6379, timeout=5)
    if url.scheme == "rediss":
        trust: Any = platformTrust()
        if config.ca is not None:
            with open(config.ca, "rb") as f:
                trust = Certificate.loadPEM(f.read())
        endpoint = wrapClientTLS(optionsForClientTLS(url.host, trustRoot=trust), endpoint)
    return endpoint


def redis_db(config: ClusterConfig) -> int | None:
    path = [p for p in hyperlink.URL.from_text(config.redis).path if p]
    return int(path[0]) if path and path[0].isdigit() else None


class RedisEngine(LocalEngine):
    """
    Several instances through Redis (txredisapi on the reactor): see the
    module docstring for the data and the failure policy.
    """

    def __init__(self, reactor: Any, registry: Any, config: ClusterConfig) -> None:
        super().__init__(reactor, registry, config.instance)
        self.config = config
        self.state = "connecting"
        self.down_since: float = reactor.seconds()
        self._redis: Any = None
        self._subscriber: Any = None
        self._heartbeat = task.LoopingCall(self._beat)
        self._heartbeat.clock = reactor
        p = config.prefix
        self.keys = {
            "revocations": f"{p}:revocations",
            "instances": f"{p}:instances",
            "tunnels": f"{p}:tunnels:",
        }

    # -- connections -------------------------------------------------------------

    def start(self) -> None:
        import txredisapi

        config = self.config
        endpoint = redis_endpoint(self.reactor, config)
        factory = txredisapi.RedisFactory(
            config.redis,
            redis_db(config),
            2,
            isLazy=True,
            password=config.password,
            username=config.username,
            replyTimeout=5,
        )
        factory.startConnecting(endpoint)
        self._redis = factory.handler
        self._pool = factory
        engine = self

        class Subscriber(txredisapi.SubscriberProtocol):  # type: ignore[misc]
            def connectionMade(self) -> None:
                super().connectionMade()
                self.whenConnected().addCallback(lambda _: engine._subscribed(self))

            def messageReceived(self, pattern: Any, channel: Any, message: Any) -> None:
                engine._message(message)

            def connectionLost(self, reason: Any) -> None:
                super().connectionLost(reason)
                engine._lost()

        subscriber = txredisapi.SubscriberFactory()
        subscriber.protocol = Subscriber
        subscriber.password = config.password
        subscriber.username = config.username
        subscriber.startConnecting(redis_endpoint(self.reactor, config))
        self._subscriber = subscriber
        self._heartbeat.start(config.lease_ttl / 3, now=False)

    def stop(self) -> defer.Deferred[None]:
        self.state = "stopped"
        if self._heartbeat.running:
            self._heartbeat.stop()
        stopping = []
        if self._redis is not None:
            key = self.keys["tunnels"] + self.instance
            gone = self._redis.delete(key).addCallback(
                lambda _: self._redis.zrem(self.keys["instances"], self.instance)
            )
            stopping.append(gone.addBoth(lambda _: self._pool.disconnect()))
        if self._subscriber is not None:
            stopping.append(self._subscriber.disconnect())
        return defer.gatherResults(stopping, consumeErrors=True).addBoth(lambda _: None)

    def _subscribed(self, protocol: Any) -> None:
        protocol.subscribe(self.keys["revocations"]).addCallbacks(
            lambda _: self._catch_up(), lambda f: self._failed("subscribe", f)
        )

    def _catch_up(self) -> defer.Deferred[None]:
        """Back on Redis (or first on it): every revocation in force, before anyone is admitted."""
        self.state = "catching_up"
        now = self.reactor.seconds()
        d = self._redis.zrangebyscore(self.keys["revocations"], now, "+inf")

        def caught(members: list[Any]) -> None:
            for member in members:
                self._message(member)
            self.state = "up"
            self.log.info(
                "the shared engine is up: {count} revocations in force",
                event="cluster",
                state="up",
                count=len(self.revocations),
                instance=self.instance,
            )
            self._beat()

        return d.addCallbacks(caught, lambda f: self._failed("catch up", f))

    def _lost(self) -> None:
        if self.state == "stopped":
            return
        if self.state in ("up", "catching_up"):
            self.down_since = self.reactor.seconds()
            self.log.warn(
                "the shared engine is unreachable: open tunnels stay; new admissions for {grace}s, then {policy}",
                event="cluster",
                state="down",
                grace=self.config.grace,
                policy=self.config.when_down,
                instance=self.instance,
            )
        self.state = "down"

    def _failed(self, what: str, f: Any) -> None:
        self.log.warn(
            "the shared engine: {what} failed: {why}",
            event="cluster_error",
            what=what,
            why=f.getErrorMessage(),
        )
        if self._subscriber is not None:
            for protocol in list(getattr(self._subscriber, "pool", [])):
                protocol.transport.loseConnection()  # reconnects, and catches up again

    # -- what the gateway asks ---------------------------------------------------

    def admitting(self) -> None:
        if self.state == "up":
            return
        if self.state == "down" and self.reactor.seconds() - self.down_since < self.config.grace:
            return
        if self.state == "down" and self.config.when_down == "local":
            return
        raise Refusal(503, "the shared engine is not reachable", {"Retry-After": "5"})

    def revoke(self, revocation: Revocation) -> defer.Deferred[Revocation]:
        if self.state != "up":
            return defer.fail(Refusal(503, "the shared engine is not reachable"))
        text = json.dumps(revocation.to_json())
        key = self.keys["revocations"]
        d = self._redis.zremrangebyscore(key, "-inf", self.reactor.seconds())
        d.addCallback(lambda _: self._redis.zadd(key, revocation.until, text))
        d.addCallback(lambda _: self._redis.publish(key, text))
        return d.addCallback(lambda _: revocation)

    def _message(self, message: Any) -> None:
        try:
            revocation = Revocation.from_json(json.loads(message))
        except (TypeError, ValueError) as e:
            self.log.warn(
                "a revocation that is not one: {why}", event="cluster_error", what="message", why=str(e)
            )
            return
        try:
            self.apply(revocation)
        except ValueError as e:
            self.log.error("revocation dropped: {why}", event="cluster_error", what="revocation", why=str(e))

    # -- the tunnel list ----------------------------------------------------------

    def _beat(self) -> None:
        if self.state != "up" or self._redis is None:
            return
        ttl = self.config.lease_ttl
        rows = json.dumps(self.local_tunnels())
        key = self.keys["tunnels"] + self.instance
        d = self._redis.set(key, rows, expire=max(1, int(ttl)))
        d.addCallback(
            lambda _: self._redis.zadd(self.keys["instances"], self.reactor.seconds() + ttl, self.instance)
        )
        d.addErrback(lambda f: self._failed("heartbeat", f))

    def tunnels(self) -> defer.Deferred[list[dict[str, Any]]]:
        if self.state != "up":
            return defer.fail(Refusal(503, "the shared engine is not reachable"))
        d = self._redis.zrangebyscore(self.keys["instances"], self.reactor.seconds(), "+inf")

        def lists(instances: list[Any]) -> Any:
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in instances]
            if self.instance not in names:
                names.append(self.instance)
            return self._redis.mget([self.keys["tunnels"] + n for n in names]).addCallback(rows, names)

        def rows(values: list[Any], names: list[str]) -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = []
            for name, value in zip(names, values, strict=False):
                if name == self.instance:
                    found += self.local_tunnels()  # this instance's, as they are now
                elif value:
                    found += json.loads(value)
            return found[:MAX_TUNNELS_LISTED]

        return d.addCallback(lists)
