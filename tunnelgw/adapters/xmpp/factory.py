"""
The C{xmpp} adapter's factory: its options parsed, its adapters built.
"""

from __future__ import annotations

from typing import Any

from zope.interface import implementer

from tunnelgw.adapters.xmpp.adapter import XmppAdapter
from tunnelgw.adapters.xmpp.options import XmppOptions
from tunnelgw.adapters.xmpp.protocol import BACKEND_TLS
from tunnelgw.adapters.xmpp.xml import (
    XMLLimits,
)
from tunnelgw.config.values import (
    ConfigError,
    Table,
    bool_value,
    positive_int_value,
    string_value,
)
from tunnelgw.interfaces import IAdapter, IAdapterFactory, ITunnel
from tunnelgw.tls import certificates, client_tls

__all__ = ["XmppAdapterFactory"]


@implementer(IAdapterFactory)
class XmppAdapterFactory:
    name = "xmpp"
    needs_upstream = True
    subprotocols = ("xmpp",)

    def needs_policy(self, options: Any) -> bool:
        return bool(options.authorize_stanzas)

    def parse_options(self, options: dict[str, Any], key: str) -> XmppOptions:
        table = Table(options, key)
        domain = table.require("domain", string_value)
        backend_tls = table.choice("backend_tls", BACKEND_TLS, "required")
        backend_ca = table.take("backend_ca", string_value, None)
        tls_name = table.take("backend_tls_name", string_value, domain)
        defaults = XMLLimits()
        limits = XMLLimits(
            max_stanza_size=table.take("max_stanza_size", positive_int_value, defaults.max_stanza_size),
            max_depth=table.take("max_depth", positive_int_value, defaults.max_depth),
            max_attributes=table.take("max_attributes", positive_int_value, defaults.max_attributes),
            max_elements=table.take("max_elements", positive_int_value, defaults.max_elements),
        )
        bind_identity = table.take("bind_identity", bool_value, False)
        authorize_stanzas = table.take("authorize_stanzas", bool_value, False)
        table.done()
        creator = None
        if backend_tls != "off":
            authorities = (
                certificates(table.key("backend_ca"), backend_ca) if backend_ca is not None else None
            )
            creator = client_tls(tls_name, authorities)
        elif backend_ca is not None:
            raise ConfigError(f"{table.key('backend_ca')}: backend_tls is off")
        return XmppOptions(
            domain=domain,
            backend_tls=backend_tls,
            tls_creator=creator,
            bind_identity=bind_identity,
            authorize_stanzas=authorize_stanzas,
            limits=limits,
        )

    def build(self, tunnel: ITunnel) -> IAdapter:
        options = tunnel.service.adapter_options
        assert isinstance(options, XmppOptions)
        return XmppAdapter(tunnel, options)
