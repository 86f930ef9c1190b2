"""
The gateway's listeners: one per C{gateway.listen} endpoint and one per
C{[[gateway.tls_listeners]]} entry, all serving one site; opened at start,
and changed by a reload without closing a connection.

A reload opens the listeners that are new before anything else changes
(one that cannot listen refuses the whole reload), gives the TLS
listeners that stay their new certificate, key and client CAs (for new
connections), and stops the listeners that are gone: they accept no more,
and what they accepted goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.application import strports
from twisted.application.service import IServiceCollection
from twisted.internet.error import CannotListenError
from twisted.protocols.tls import TLSMemoryBIOFactory

from tunnelgw.config.model import GatewayConfig
from tunnelgw.listeners import with_backlog
from tunnelgw.tls import ReloadableServerTLS, context_factory

__all__ = ["Listeners", "ListenerSpec", "ListenFailed"]


@dataclass(frozen=True)
class ListenerSpec:
    """One listener a configuration asks for."""

    key: str
    """Its configuration key, for messages."""
    description: str
    tls: Any = None
    """Its TLS context (L{OpenSSL.SSL.Context}), for a TLS listener."""
    site: Any = None
    """What it serves, if not the gateway's site (the metrics)."""

    @property
    def kind(self) -> tuple[bool, bool, str]:
        """What a reload compares: TLS or not, the gateway's site or another, the endpoint."""
        return (self.tls is not None, self.site is not None, self.description)


class ListenFailed(Exception):
    """A listener could not listen: its key, its description and why."""

    def __init__(self, key: str, description: str, reason: str) -> None:
        super().__init__(f"{key}: cannot listen on {description}: {reason}")
        self.key = key
        self.description = description
        self.reason = reason


def specs(config: GatewayConfig, metrics: Any = None, admin: Any = None) -> list[ListenerSpec]:
    """
    The listeners of C{config}, their TLS files read; the metrics and
    admin listeners serving C{metrics} and C{admin} (sites), if C{config}
    has them.

    @raise tunnelgw.errors.ConfigError: a TLS file is missing or not PEM.
    """
    wanted = [ListenerSpec(f"gateway.listen[{i}]", d) for i, d in enumerate(config.listen)]
    for i, listener in enumerate(config.tls_listeners):
        key = f"gateway.tls_listeners[{i}]"
        wanted.append(ListenerSpec(f"{key}.endpoint", listener.endpoint, context_factory(listener, key)))
    if config.metrics is not None and metrics is not None:
        wanted.append(ListenerSpec("metrics.listen", config.metrics.listen, site=metrics))
    if config.admin is not None and admin is not None:
        wanted.append(ListenerSpec("admin.listen", config.admin.listen, site=admin))
    return wanted


def failed(e: CannotListenError, spec: ListenerSpec) -> ListenFailed:
    reason = getattr(e.socketError, "strerror", None) or str(e.socketError)
    return ListenFailed(spec.key, spec.description, reason)


class Listeners:
    """
    The listening services of a site, under C{parent}, by kind and endpoint.
    """

    def __init__(self, parent: IServiceCollection, site: Any, reactor: Any) -> None:
        self._parent = parent
        self._site = site
        self._reactor = reactor
        self.open: dict[tuple[bool, bool, str], tuple[ListenerSpec, Any]] = {}
        """L{ListenerSpec.kind} → its spec and its listening service."""
        self._creators: dict[str, ReloadableServerTLS] = {}

    def spec_of(self, service: Any) -> ListenerSpec | None:
        for spec, listening in self.open.values():
            if listening is service:
                return spec
        return None

    def _service(self, spec: ListenerSpec) -> Any:
        factory: Any = spec.site or self._site
        if spec.tls is not None:
            creator = self._creators[spec.description] = ReloadableServerTLS(spec.tls)
            factory = TLSMemoryBIOFactory(creator, False, self._site)
        return strports.service(with_backlog(spec.description), factory, reactor=self._reactor)

    def add(self, wanted: list[ListenerSpec]) -> None:
        """
        At start: a service for each, under the parent (which opens them
        when it starts).
        """
        for spec in wanted:
            listening = self._service(spec)
            listening.setServiceParent(self._parent)
            self.open[spec.kind] = (spec, listening)

    def replace(self, wanted: list[ListenerSpec]) -> tuple[list[str], list[str], list[str]]:
        """
        A reload: open what is new (all or nothing), renew the TLS of what
        stays, stop what is gone.

        @return: the descriptions opened, renewed and stopped.
        @raise ListenFailed: a new listener could not listen; nothing changed.
        """
        keys = {spec.kind: spec for spec in wanted}
        added: list[tuple[tuple[bool, bool, str], ListenerSpec, Any]] = []
        for key, spec in keys.items():
            if key in self.open:
                continue
            listening = self._service(spec)
            try:
                listening.setServiceParent(self._parent)  # the parent runs: it listens now, or raises
            except CannotListenError as e:
                self._parent.removeService(listening)
                for _, dropped, opened in [(key, spec, None), *added]:
                    if opened is not None:
                        opened.disownServiceParent()
                    if dropped.tls is not None:
                        self._creators.pop(dropped.description, None)
                raise failed(e, spec) from None
            added.append((key, spec, listening))
        renewed = []
        for key, spec in keys.items():
            if key in self.open and spec.tls is not None:
                self._creators[spec.description].context = spec.tls
                self.open[key] = (spec, self.open[key][1])
                renewed.append(spec.description)
        stopped = []
        for key in [k for k in self.open if k not in keys]:
            spec, listening = self.open.pop(key)
            listening.disownServiceParent()  # stops listening; its connections stay
            if spec.tls is not None:
                self._creators.pop(spec.description, None)
            stopped.append(spec.description)
        for key, spec, listening in added:
            self.open[key] = (spec, listening)
        return [spec.description for _, spec, _ in added], renewed, stopped
