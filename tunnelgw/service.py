"""
Build the gateway's services from a configuration.
"""

from __future__ import annotations

from typing import Any

from twisted.application import strports
from twisted.application.service import MultiService
from twisted.protocols.tls import TLSMemoryBIOFactory

from tunnelgw.config import GatewayConfig
from tunnelgw.security.realm import RealmAuthenticator
from tunnelgw.tls import context_factory
from tunnelgw.web.pipeline import AdmissionPipeline
from tunnelgw.web.site import GatewaySite

__all__ = ["GatewayService", "build_site"]


def build_site(config: GatewayConfig, reactor: Any) -> GatewaySite:
    """
    The HTTP front of C{config}, on C{reactor}.
    """
    authenticator = RealmAuthenticator(config)
    pipeline = AdmissionPipeline(reactor, authenticator)
    return GatewaySite(config, reactor, pipeline, authenticator)


class GatewayService(MultiService):
    """
    One listener service per C{gateway.listen} endpoint, all serving one
    site.  A listener that cannot bind stops the start (strports makes the
    bind failure fatal).
    """

    def __init__(self, config: GatewayConfig, reactor: Any) -> None:
        super().__init__()
        self.config = config
        self.site = build_site(config, reactor)
        for description in config.listen:
            strports.service(description, self.site, reactor=reactor).setServiceParent(self)
        for i, listener in enumerate(config.tls_listeners):
            options = context_factory(listener, f"gateway.tls_listeners[{i}]")
            tls = TLSMemoryBIOFactory(options, False, self.site)
            strports.service(listener.endpoint, tls, reactor=reactor).setServiceParent(self)
