"""
Build the gateway's services from a configuration.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from typing import Any

from twisted.application import service
from twisted.application.service import MultiService
from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.web.server import Site

from tunnelgw.admission.pipeline import AdmissionPipeline
from tunnelgw.audit import AuditTrail
from tunnelgw.cluster.engine import LocalEngine
from tunnelgw.cluster.redis import RedisEngine
from tunnelgw.cluster.shared import SharedLimitStore
from tunnelgw.config.model import ClusterConfig, GatewayConfig
from tunnelgw.errors import CloseCode, ConfigError
from tunnelgw.front.admin import admin_site
from tunnelgw.front.link_resource import admit_link
from tunnelgw.front.listening import Listeners, ListenerSpec, ListenFailed, failed, specs
from tunnelgw.front.site import GatewaySite
from tunnelgw.limits import MemoryLimitStore
from tunnelgw.logs import Logger
from tunnelgw.metrics import GatewayMetrics, MetricsPage, QuietSite
from tunnelgw.notify import monotonic_usec, notify
from tunnelgw.rejudge import Verdict, judge_all
from tunnelgw.security.realm import RealmAuthenticator
from tunnelgw.security.throttle import LoginGuard, Waiting
from tunnelgw.upstream.dialer import LinkDialer
from tunnelgw.upstream.links import LinkPool

__all__ = ["GatewayService", "build_front", "build_site"]

_log = Logger()


def build_site(config: GatewayConfig, reactor: Any) -> GatewaySite:
    """
    The HTTP front of C{config}, on C{reactor}.
    """
    # one process's counts; a shared store would take its place here
    store = MemoryLimitStore(reactor)
    pipeline, authenticator = build_front(config, reactor, store, {})
    return GatewaySite(config, reactor, pipeline, authenticator)


def build_front(
    config: GatewayConfig,
    reactor: Any,
    store: Any,
    pools: dict[str, LinkPool],
    waiting: Waiting | None = None,
) -> tuple[AdmissionPipeline, RealmAuthenticator]:
    """
    The admission pipeline and authenticator of C{config}: its realms'
    modules, its login limits (counting the logins that wait in
    C{waiting}, the gateway's, kept across reloads) and its link pools
    (those of C{pools} whose configuration is unchanged are kept, with
    their idle links).
    """
    guard = LoginGuard(config.logins, store, waiting)
    authenticator = RealmAuthenticator(config, guard, reactor)
    links = {}
    for pool in config.links:
        kept = pools.get(pool.name)
        links[pool.name] = kept if kept is not None and kept.config == pool else LinkPool(pool, reactor)
    pipeline = AdmissionPipeline(reactor, authenticator, links=links, store=store, gateway=config)
    return pipeline, authenticator


class GatewayService(MultiService):
    """
    The gateway: its listeners (L{Listeners}), serving one site; the
    reverse links it dials; and reloads (L{reload}).  A listener that
    cannot bind stops the start.

    Stopping drains: the listeners close first (no new connections), then
    every open tunnel is closed with 1001 ("going away"), after what it was
    already sent, and the stop waits for them, at most
    C{gateway.drain_timeout} seconds.
    """

    log = Logger()

    def __init__(
        self, config: GatewayConfig, reactor: Any, source: Callable[[], GatewayConfig] | None = None
    ) -> None:
        super().__init__()
        self.reactor = reactor
        self.config = config
        self.source = source
        """Reads the configuration again for a reload (the file, checked); C{None}: nothing to read."""
        self.reloads: Counter[str] = Counter()
        """Reload outcomes (C{applied}, C{invalid}, C{failed}) and tunnels they closed (C{closed})."""
        # failed logins counted across instances when there is a cluster
        # (its engine read at each count: a reload may add or change it)
        self.store = SharedLimitStore(MemoryLimitStore(reactor), lambda: self.engine, reactor)
        self.waiting = Waiting()
        """The logins waiting for an asynchronous answer, counted across reloads."""
        pipeline, authenticator = build_front(config, reactor, self.store, {}, self.waiting)
        self.site = GatewaySite(config, reactor, pipeline, authenticator)
        self.site.registry.late = self._late
        self.engine = self._engine(config.cluster)
        pipeline.engine = self.engine
        self.listeners = Listeners(self, self.site, reactor)
        self.metrics: GatewayMetrics | None = None
        self._metrics_site: Site | None = None
        self._admin_site = admin_site(self, reactor)
        self.listeners.add(specs(config, self._metrics_for(config), self._admin_site))
        # reverse connectivity: this (inner) gateway dials out to outer ones
        self.dialers = self._dial(config)
        self.audit: AuditTrail | None = None
        self.draining = False

    def _metrics_for(self, config: GatewayConfig) -> Site | None:
        """
        The metrics listener's site for C{config}, or C{None}: made once, so
        that its counters go on across reloads.
        """
        if config.metrics is None:
            return None
        if self.metrics is None:
            self.metrics = GatewayMetrics(self, config.metrics)
            self._metrics_site = QuietSite(MetricsPage(self.metrics))
            if self.running:
                globalLogPublisher.addObserver(self.metrics)
        self.metrics.config = config.metrics
        return self._metrics_site

    def _dial(self, config: GatewayConfig) -> list[LinkDialer]:
        dialers = []
        for link in config.reverse_links:
            dialer = LinkDialer(link, self.reactor, functools.partial(admit_link, self.site))
            dialer.setServiceParent(self)
            dialers.append(dialer)
        return dialers

    def _trail(self, path: str | None) -> AuditTrail | None:
        """
        @raise ConfigError: the audit file cannot be opened.
        """
        if path is None:
            return None
        try:
            return AuditTrail(path)
        except OSError as e:
            raise ConfigError(f"audit.path: cannot open {path}: {e.strerror}") from None

    def _follow(self, trail: AuditTrail | None) -> None:
        """The audit stream goes to C{trail} from now on."""
        if self.audit is not None:
            globalLogPublisher.removeObserver(self.audit)
            self.audit.close()
        self.audit = trail
        if trail is not None:
            globalLogPublisher.addObserver(trail)

    def privilegedStartService(self) -> None:
        # MultiService's, with a listener that cannot listen (a port in
        # use, a missing directory, no permission) one line naming its key
        # and why, rather than twistd's traceback.
        if self.metrics is not None:
            globalLogPublisher.addObserver(self.metrics)
        try:
            self._follow(self._trail(self.config.audit))  # before privileges are dropped: /var/log
        except ConfigError as e:
            self.log.critical("{reason}", event="audit_failed", reason=str(e))
            raise SystemExit(f"tunnelgw: {e}") from None
        service.Service.privilegedStartService(self)
        for child in self:
            try:
                child.privilegedStartService()
            except CannotListenError as e:
                spec = self.listeners.spec_of(child) or ListenerSpec("a listener", "?")
                why = failed(e, spec)
                self.log.critical(
                    "{key}: cannot listen on {description}: {reason}",
                    event="listen_failed",
                    key=why.key,
                    description=why.description,
                    reason=why.reason,
                )
                raise SystemExit(f"tunnelgw: {why}") from None

    # -- reload -------------------------------------------------------------

    def reread(self) -> Any:
        """
        SIGHUP: read the configuration again and L{reload} it; one that
        does not load changes nothing (C{event=reload}, C{outcome=invalid}).
        The service manager is told (L{notify}): reloading, then ready.
        """
        notify("RELOADING=1", monotonic_usec(), "STATUS=reloading the configuration")
        try:
            return self._reread()
        finally:
            notify("READY=1", f"STATUS={self.status()}")

    def status(self) -> str:
        """One line for the service manager's status."""
        state = "draining" if self.draining else "serving"
        return f"{state} {len(self.config.services)} services, {len(self.site.registry)} tunnels open"

    def _reread(self) -> Any:
        if self.source is None:
            self.log.warn(
                "reload: no configuration file (the embedded default); nothing to reload",
                event="reload",
                outcome="invalid",
                reason="no configuration file",
            )
            self.reloads["invalid"] += 1
            return None
        try:
            config = self.source()
        except ConfigError as e:
            self.log.error(
                "reload refused, the running configuration stays: {reason}",
                event="reload",
                outcome="invalid",
                reason=str(e),
            )
            self.reloads["invalid"] += 1
            return None
        return self.reload(config)

    def reload(self, config: GatewayConfig) -> defer.Deferred[int] | None:
        """
        Serve C{config} from now on, for new connections at once, and judge
        every open tunnel again under it (L{tunnelgw.rejudge}).  C{None}
        (and nothing changed) when one of its listeners cannot listen or a
        TLS file cannot be read.

        @return: a Deferred firing, once every tunnel is judged, with how
            many were closed.
        """
        trail = None
        try:
            trail = self._trail(config.audit)
            wanted = specs(config, self._metrics_for(config), self._admin_site)
            opened, renewed, stopped = self.listeners.replace(wanted)
        except (ConfigError, ListenFailed) as e:
            if trail is not None:
                trail.close()
            self.log.error(
                "reload refused, the running configuration stays: {reason}",
                event="reload",
                outcome="failed",
                reason=str(e),
            )
            self.reloads["failed"] += 1
            return None
        old, self.config = self.config, config
        self._follow(trail)
        pipeline, authenticator = build_front(
            config, self.reactor, self.store, dict(self.site.pipeline.links), self.waiting
        )
        pipeline.draining = self.draining
        if config.cluster != old.cluster:
            stopping = self.engine
            self.engine = self._engine(config.cluster)
            self.engine.start()
            stopping.stop()
        pipeline.engine = self.engine
        self.site.configure(config, pipeline, authenticator)
        for dialer in self.dialers:
            dialer.disownServiceParent()  # its idle links close; those carrying a tunnel stay
        self.dialers = [] if self.draining else self._dial(config)
        self.reloads["applied"] += 1
        self.log.info(
            "configuration reloaded: {services} services, listeners opened {opened}, stopped {stopped}",
            event="reload",
            outcome="applied",
            services=len(config.services),
            opened=opened,
            renewed=renewed,
            stopped=stopped,
            tunnels=len(self.site.registry),
        )
        tunnels = list(self.site.registry.tunnels)
        return self._rejudge(tunnels, old, config, authenticator)

    def _late(self, tunnel: Any) -> None:
        """
        A tunnel that started after a reload, admitted under the
        configuration before it (its handshake was under way): judged now.
        """
        if tunnel.service is not self.config.service_named(tunnel.service.name):
            authenticator = self.site.authenticator
            self._rejudge([tunnel], None, self.config, authenticator)

    def _rejudge(
        self, tunnels: list[Any], old: GatewayConfig | None, new: GatewayConfig, authenticator: Any
    ) -> defer.Deferred[int]:
        def closing(tunnel: Any, verdict: Verdict) -> None:
            self.reloads["closed"] += 1

        return judge_all(tunnels, old, new, authenticator.contexts, self.reactor, closing)

    # -- drain ----------------------------------------------------------------

    def drain(self) -> defer.Deferred[None]:
        """
        SIGUSR1: take this instance out without stopping it.  Every new
        request is refused (503, and the health endpoint answers 503
        C{draining}, so a load balancer stops sending clients), reverse
        links are no longer offered, and open tunnels go on for
        C{gateway.drain_timeout} seconds, then are closed with 1001.  The
        process stays up until it is stopped.

        @return: a Deferred firing once no tunnel is open.
        """
        registry = self.site.registry
        if self.draining:
            return registry.when_empty()
        self.draining = self.site.pipeline.draining = True
        for dialer in self.dialers:
            dialer.disownServiceParent()
        self.dialers = []
        timeout = self.config.drain_timeout
        self.log.info(
            "draining: new requests refused, {count} tunnels closed in {timeout}s unless they end first",
            event="drain",
            count=len(registry),
            timeout=timeout,
        )

        def time_up() -> None:
            tunnels = list(registry.tunnels)
            if tunnels:
                self.log.info("drain time is up: closing {left} tunnels", event="drain", left=len(tunnels))
            for tunnel in tunnels:
                tunnel.end(CloseCode.GOING_AWAY, "gateway draining")

        call = self.reactor.callLater(timeout, time_up)
        drained = registry.when_empty()

        def empty(_: object) -> None:
            if call.active():
                call.cancel()

        return drained.addCallback(empty)

    # -- stop -----------------------------------------------------------------

    def _engine(self, cluster: ClusterConfig | None) -> LocalEngine:
        if cluster is None:
            return LocalEngine(self.reactor, self.site.registry)
        return RedisEngine(self.reactor, self.site.registry, cluster)

    def startService(self) -> None:
        super().startService()
        self.engine.start()
        # the listeners listen (privilegedStartService); ready once the reactor runs
        self.reactor.callWhenRunning(lambda: notify("READY=1", f"STATUS={self.status()}"))

    def stopService(self) -> defer.Deferred[None]:
        notify("STOPPING=1", "STATUS=stopping: draining the tunnels")
        stopped = super().stopService()
        tunnels = list(self.site.registry.tunnels)
        self.log.info(
            "draining {count} tunnels (at most {timeout}s)",
            event="drain",
            count=len(tunnels),
            timeout=self.config.drain_timeout,
        )
        for tunnel in tunnels:
            tunnel.fail(CloseCode.GOING_AWAY, "gateway shutting down")
        timeout = self.config.drain_timeout

        def gave_up(result: object, seconds: float) -> None:
            left = len(self.site.registry.tunnels)
            self.log.warn(
                "{left} tunnels still open after {timeout}s", event="drain", left=left, timeout=seconds
            )

        drained = self.site.registry.when_empty()
        if timeout > 0:
            drained.addTimeout(timeout, self.reactor, onTimeoutCancel=gave_up)

        def done(result: object) -> Any:
            self.engine.stop()
            self._follow(None)  # after the drained tunnels' events
            if self.metrics is not None:
                globalLogPublisher.removeObserver(self.metrics)
            return result if isinstance(result, Failure) else None

        return defer.gatherResults([stopped, drained]).addBoth(done)
