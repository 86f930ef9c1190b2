"""
The engine of several instances: Redis, through txredisapi on the reactor
(L{tunnelgw.cluster.engine} says what it does, and the data it keeps).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import hyperlink

from twisted.internet import defer, task
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS

from tunnelgw.cluster.engine import MAX_TUNNELS_LISTED, LocalEngine
from tunnelgw.cluster.revocations import Revocation
from tunnelgw.config.model import ClusterConfig
from tunnelgw.errors import Refusal
from tunnelgw.tls import certificates, client_tls

__all__ = ["Lease", "RedisEngine"]

RECONNECT_MAX_DELAY = 2.0
"""Seconds between attempts to reach Redis again, at most: admissions wait on it."""

# KEYS: the lease keys; ARGV: now, end, member, key lifetime (ms), then each
# key's limit.  All or none: expired entries dropped, every key under its
# limit, then the member added to each.
LEASE_SCRIPT = """
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[1])
  if redis.call('ZSCORE', key, ARGV[3]) == false and redis.call('ZCARD', key) >= tonumber(ARGV[4 + i]) then
    return 0
  end
end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, ARGV[2], ARGV[3])
  redis.call('PEXPIRE', key, ARGV[4])
end
return 1
"""
# KEYS: a counter; ARGV: the amount, the window (ms), which a new counter lives for.
COUNT_SCRIPT = """
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return n
"""
# KEYS: lease keys; ARGV: end, key lifetime (ms), then the member of each key.
RENEW_SCRIPT = """
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, ARGV[1], ARGV[2 + i])
  redis.call('PEXPIRE', key, ARGV[2])
end
return #KEYS
"""


class Lease:
    """A tunnel's places across instances: one sorted-set member per key."""

    __slots__ = ("_engine", "keys", "member")

    def __init__(self, engine: Any, keys: tuple[str, ...], member: str) -> None:
        self._engine = engine
        self.keys = keys
        self.member = member

    def release(self) -> None:
        self._engine._release(self)


def redis_endpoint(reactor: Any, config: ClusterConfig) -> Any:
    """The client endpoint of C{config.redis}: TLS verified for C{rediss://}."""
    url = hyperlink.URL.from_text(config.redis)
    endpoint: Any = HostnameEndpoint(reactor, url.host, url.port or 6379, timeout=5)
    if url.scheme == "rediss":
        endpoint = wrapClientTLS(redis_tls(config), endpoint)
    return endpoint


def redis_tls(config: ClusterConfig) -> Any:
    """
    The TLS of C{rediss://}: the server's certificate verified against
    every CA of C{cluster.ca} (the system's without it), and its name.
    """
    authorities = certificates("cluster.ca", config.ca) if config.ca is not None else None
    return client_tls(hyperlink.URL.from_text(config.redis).host, authorities)


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
        self._leases: dict[str, Lease] = {}
        self._heartbeat = task.LoopingCall(self._beat)
        self._heartbeat.clock = reactor
        p = config.prefix
        self.keys = {
            "revocations": f"{p}:revocations",
            "instances": f"{p}:instances",
            "tunnels": f"{p}:tunnels:",
            "fallback": f"{p}:fallback:",
        }
        # the fallback sessions' ids begin with it: not the instance's name
        self.fallback_tag = hashlib.sha256(self.instance.encode("utf-8")).hexdigest()[:12]
        self._owners: dict[str, tuple[str | None, float]] = {}

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
        factory.maxDelay = RECONNECT_MAX_DELAY
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
        subscriber.maxDelay = RECONNECT_MAX_DELAY
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
            self._renew()  # leases taken while Redis was unreachable, written now (the same members: no double count)
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

    # -- counts shared (failed logins: tunnelgw.cluster.shared) ------------------

    def add(self, key: str, amount: int, window: float) -> defer.Deferred[Any] | None:
        """
        Add C{amount} to the cluster-wide counter C{key} of a window of
        C{window} seconds: a Deferred of its total; C{None} while Redis is
        unreachable.
        """
        if self.state != "up":
            return None
        redis_key = f"{self.config.prefix}:count:{key}"
        return self._redis.eval(COUNT_SCRIPT, [redis_key], [amount, max(1, int(window * 1000))])

    # -- leases: places held across instances ------------------------------------

    def hold(self, wanted: tuple[tuple[str, int], ...], owner: str) -> defer.Deferred[Any] | None:
        if not wanted:
            return None
        lease = Lease(
            self, tuple(f"{self.config.prefix}:lease:{key}" for key, _ in wanted), f"{self.instance}:{owner}"
        )
        if self.state != "up":
            self._leases[lease.member] = lease
            return None  # held here only; written to Redis when it is back
        now = self.reactor.seconds()
        args = [now, now + self.config.lease_ttl, lease.member, int(self.config.lease_ttl * 2000)]
        d = self._redis.eval(LEASE_SCRIPT, list(lease.keys), args + [limit for _, limit in wanted])

        # renewed from when it is granted only: a renewal of one not yet
        # granted would write it, refused or not
        def answered(ok: Any) -> Lease | None:
            if ok:
                self._leases[lease.member] = lease
                return lease
            return None

        def failed(f: Any) -> Lease:
            self._failed("lease", f)
            self._leases[lease.member] = lease
            return lease  # held here only, as while Redis is unreachable

        return d.addCallbacks(answered, failed)

    def _renew(self) -> None:
        """Every lease this instance holds, its end moved on (or written, after an outage)."""
        leases = list(self._leases.values())
        if not leases:
            return
        keys = [key for lease in leases for key in lease.keys]
        members = [lease.member for lease in leases for _ in lease.keys]
        now = self.reactor.seconds()
        args = [now + self.config.lease_ttl, int(self.config.lease_ttl * 2000), *members]
        self._redis.eval(RENEW_SCRIPT, keys, args).addErrback(lambda f: self._failed("lease renewal", f))

    def _release(self, lease: Lease) -> None:
        if self._leases.pop(lease.member, None) is None or self.state != "up":
            return  # not held, or its entries expire by themselves
        for key in lease.keys:
            self._redis.zrem(key, lease.member).addErrback(lambda f: self._failed("lease release", f))

    # -- the tunnel list ----------------------------------------------------------

    def _beat(self) -> None:
        if self.state != "up" or self._redis is None:
            return
        self._renew()
        ttl = self.config.lease_ttl
        rows = json.dumps(self.local_tunnels())
        key = self.keys["tunnels"] + self.instance
        d = self._redis.set(key, rows, expire=max(1, int(ttl)))
        d.addCallback(
            lambda _: self._redis.zadd(self.keys["instances"], self.reactor.seconds() + ttl, self.instance)
        )
        if self.config.advertise is not None:
            key = self.keys["fallback"] + self.fallback_tag
            d.addCallback(lambda _: self._redis.set(key, self.config.advertise, expire=max(1, int(ttl))))
        d.addErrback(lambda f: self._failed("heartbeat", f))

    def fallback_owner(self, tag: str) -> defer.Deferred[str | None]:
        """Where the instance of C{tag} is reached (asked of Redis once a second at most)."""
        now = self.reactor.seconds()
        known = self._owners.get(tag)
        if known is not None and known[1] > now:
            return defer.succeed(known[0])
        if self.state != "up":
            return defer.succeed(None)

        def found(value: Any) -> str | None:
            url = value.decode() if isinstance(value, bytes) else value
            if len(self._owners) >= 1024:
                self._owners.clear()
            self._owners[tag] = (url, now + 1.0)
            return url if isinstance(url, str) else None

        return self._redis.get(self.keys["fallback"] + tag).addCallback(found)

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
