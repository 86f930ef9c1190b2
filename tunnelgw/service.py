"""
Build the gateway's services from a configuration.
"""

from __future__ import annotations

import functools
import gc
import signal
from typing import Any

from twisted.application import service, strports
from twisted.application.service import MultiService
from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.protocols.tls import TLSMemoryBIOFactory

from tunnelgw.admission.pipeline import AdmissionPipeline
from tunnelgw.config.model import GatewayConfig
from tunnelgw.errors import CloseCode
from tunnelgw.front.link_resource import admit_link
from tunnelgw.front.site import GatewaySite
from tunnelgw.limits import MemoryLimitStore
from tunnelgw.listeners import with_backlog
from tunnelgw.logs import Logger
from tunnelgw.security.realm import RealmAuthenticator
from tunnelgw.security.throttle import LoginGuard
from tunnelgw.tls import context_factory
from tunnelgw.upstream.dialer import LinkDialer
from tunnelgw.upstream.links import LinkPool

__all__ = ["GatewayService", "build_site", "ignore_sighup", "tune_collector"]

_log = Logger()


def ignore_sighup(reactor: Any) -> None:
    """
    SIGHUP is what operators send to reload, and by default it ends a
    process at once: no close frames, no drain.  Until the gateway can
    reload, it logs the signal and goes on (C{event=sighup}).
    """

    def received(signum: int, frame: Any) -> None:
        reactor.callFromThread(
            _log.warn,
            "SIGHUP received: reloading is not supported yet; the gateway goes on unchanged",
            event="sighup",
        )

    signal.signal(signal.SIGHUP, received)


# Young objects the collector lets pile up before it looks at them (CPython's
# default is 700).  A handshake allocates a few hundred short-lived objects,
# all freed by reference counting (no cycles: see NoCyclesTests and
# tests/integration/test_no_cycles.py); with the default the collector ran
# every couple of handshakes for nothing.
YOUNG_THRESHOLD = 7000


def tune_collector() -> None:
    """
    Once the gateway is up, in the process twistd runs: what was loaded to
    start it (modules, configuration, a hundred thousand objects) is moved
    out of the collector's sight (C{gc.freeze}), so that its full scans
    look at the tunnels only, and it runs less often on young objects.
    """
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)


def build_site(config: GatewayConfig, reactor: Any) -> GatewaySite:
    """
    The HTTP front of C{config}, on C{reactor}.
    """
    # one process's counts; a shared store would take its place here
    store = MemoryLimitStore(reactor)
    guard = LoginGuard(config.logins, store)
    authenticator = RealmAuthenticator(config, guard, reactor)
    pools = {pool.name: LinkPool(pool, reactor) for pool in config.links}
    pipeline = AdmissionPipeline(reactor, authenticator, links=pools, store=store, gateway=config)
    return GatewaySite(config, reactor, pipeline, authenticator)


class GatewayService(MultiService):
    """
    One listener service per C{gateway.listen} endpoint, all serving one
    site.  A listener that cannot bind stops the start (strports makes the
    bind failure fatal).

    Stopping drains: the listeners close first (no new connections), then
    every open tunnel is closed with 1001 ("going away"), after what it was
    already sent, and the stop waits for them, at most
    C{gateway.drain_timeout} seconds.
    """

    log = Logger()

    def __init__(self, config: GatewayConfig, reactor: Any) -> None:
        super().__init__()
        self.reactor = reactor
        self.config = config
        self.site = build_site(config, reactor)
        self._listeners: dict[Any, tuple[str, str]] = {}
        """Each listening service: its configuration key and description."""
        for i, description in enumerate(config.listen):
            listening = strports.service(with_backlog(description), self.site, reactor=reactor)
            listening.setServiceParent(self)
            self._listeners[listening] = (f"gateway.listen[{i}]", description)
        for i, listener in enumerate(config.tls_listeners):
            key = f"gateway.tls_listeners[{i}]"
            options = context_factory(listener, key)
            tls = TLSMemoryBIOFactory(options, False, self.site)
            listening = strports.service(with_backlog(listener.endpoint), tls, reactor=reactor)
            listening.setServiceParent(self)
            self._listeners[listening] = (f"{key}.endpoint", listener.endpoint)
        # reverse connectivity: this (inner) gateway dials out to outer ones
        for link in config.reverse_links:
            LinkDialer(link, reactor, functools.partial(admit_link, self.site)).setServiceParent(self)

    def privilegedStartService(self) -> None:
        # MultiService's, with a listener that cannot listen (a port in
        # use, a missing directory, no permission) one line naming its key
        # and why, rather than twistd's traceback.
        service.Service.privilegedStartService(self)
        for child in self:
            try:
                child.privilegedStartService()
            except CannotListenError as e:
                key, description = self._listeners.get(child, ("a listener", "?"))
                reason = getattr(e.socketError, "strerror", None) or str(e.socketError)
                self.log.critical(
                    "{key}: cannot listen on {description}: {reason}",
                    event="listen_failed",
                    key=key,
                    description=description,
                    reason=reason,
                )
                raise SystemExit(f"tunnelgw: {key}: cannot listen on {description}: {reason}") from None

    def stopService(self) -> defer.Deferred[None]:
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
        return defer.gatherResults([stopped, drained]).addCallback(lambda _: None)
