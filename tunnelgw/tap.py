"""
The twistd plugin's options and service: C{twistd -n tunnelgw [--config FILE]}.
"""

from __future__ import annotations

import gc
import os
import signal
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from twisted.python import usage

from tunnelgw._compat import check as check_shortcuts
from tunnelgw.config.loader import load, loads
from tunnelgw.config.model import DEFAULT_CONFIG, GatewayConfig
from tunnelgw.config.values import ConfigError
from tunnelgw.listeners import check_listeners
from tunnelgw.service import GatewayService
from tunnelgw.upstream import split_description

__all__ = ["Options", "makeService", "on_signal", "tune_collector"]


def on_signal(reactor: Any, signum: int, action: Callable[[], object]) -> None:
    """
    C{signum} calls C{action} on the reactor's thread: SIGHUP reloads
    (by default it would end the process at once, without close frames),
    SIGUSR1 drains.
    """

    def received(signum: int, frame: Any) -> None:
        reactor.callFromThread(action)

    signal.signal(signum, received)


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


class Options(usage.Options):
    synopsis = "[--config FILE] [--listen ENDPOINT ...]"
    longdesc = (
        "Run the tunnelgw WebSocket gateway.  Without --config, an embedded"
        " default serves an echo service at /echo on tcp:8080:interface=127.0.0.1."
    )
    optParameters = [
        ["config", "c", None, "The TOML configuration file (see etc/tunnelgw.toml)."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []

    def opt_listen(self, description: str) -> None:
        """
        A listener endpoint description (repeatable); replaces gateway.listen.
        """
        self["listen"].append(description)

    def postOptions(self) -> None:
        try:
            check_shortcuts()
        except ValueError as e:
            raise usage.UsageError(str(e)) from None
        try:
            if self["config"] is None:
                config = loads(DEFAULT_CONFIG)
            else:
                config = load(self["config"])
        except ConfigError as e:
            raise usage.UsageError(f"invalid configuration: {e}") from None
        try:
            config = self.checked(config)
        except ConfigError as e:
            raise usage.UsageError(f"invalid configuration: {e}") from None
        if self["config"] is None and self["listen"]:
            config = default_origins(config)
        self["gateway_config"] = config

    def checked(self, config: GatewayConfig) -> GatewayConfig:
        """
        C{config} with the command line's listeners, each checked (what
        twisted.application.strports would only refuse with a traceback).

        @raise ConfigError: a listener is not valid.
        """
        if self["listen"]:
            config = replace(config, listen=tuple(self["listen"]))
        check_listeners(config, "--listen" if self["listen"] else "gateway.listen")
        return config

    def reread(self) -> GatewayConfig:
        """
        The configuration file read again, for a reload.

        @raise ConfigError: it does not load, or a listener is not valid.
        """
        return self.checked(load(self["config"]))


def default_origins(config: GatewayConfig) -> GatewayConfig:
    """
    The embedded default moved by C{--listen}: its echo service admits the
    Origin of a page served where it now listens (C{http://HOST:PORT} of
    each TCP listener; C{127.0.0.1} and C{localhost} for a loopback or
    any-address one), as it admits C{:8080}'s by default.
    """
    origins: set[str] = set()
    for description in config.listen:
        parts = split_description(description)
        if parts[0] not in ("tcp", "tcp6", "reuseport") or len(parts) < 2 or not parts[1].isdigit():
            continue
        options = dict(p.split("=", 1) for p in parts[2:] if "=" in p)
        host = options.get("interface", "")
        hosts = ["127.0.0.1", "localhost"] if host in ("", "0.0.0.0", "::", "127.0.0.1") else [host]
        origins.update(f"http://{h}:{parts[1]}" for h in hosts)
    services = tuple(replace(s, origins=s.origins | frozenset(origins)) for s in config.services)
    return replace(config, services=services)


def for_worker(config: GatewayConfig, environ: Any = None) -> GatewayConfig:
    """
    C{config} as worker C{TUNNELGW_WORKER} of C{tunnelgw workers} serves
    it: the metrics on the metrics listener's port plus the worker's index,
    the admin listener on worker 0 alone.  As it is, outside workers.
    """
    index = (environ if environ is not None else os.environ).get("TUNNELGW_WORKER")
    if index is None or not index.isdigit() or int(index) == 0:
        return config
    metrics = config.metrics
    if metrics is not None:
        parts = metrics.listen.split(":")
        if len(parts) > 1 and parts[1].isdigit():
            parts[1] = str(int(parts[1]) + int(index))
            metrics = replace(metrics, listen=":".join(parts))
    return replace(config, metrics=metrics, admin=None)


def makeService(options: Options, reactor: Any = None) -> GatewayService:
    if reactor is None:
        from tunnelgw.reactor import install_default

        install_default()  # the gateway's reactor, unless one was chosen
        from twisted.internet import reactor as _reactor

        reactor = _reactor
    config: GatewayConfig = for_worker(options["gateway_config"])
    source = (lambda: for_worker(options.reread())) if options["config"] is not None else None
    service = GatewayService(config, reactor, source)
    reactor.callWhenRunning(tune_collector)
    # now: the listeners open before the reactor runs
    on_signal(reactor, signal.SIGHUP, service.reread)
    on_signal(reactor, signal.SIGUSR1, service.drain)
    return service
