"""
Adapters: the protocol logic of a tunnel, one module per protocol family.
"""

from __future__ import annotations

from tunnelgw.adapters.echo import EchoAdapterFactory
from tunnelgw.adapters.raw import RawAdapterFactory
from tunnelgw.adapters.rfb.factory import RfbAdapterFactory
from tunnelgw.adapters.stomp.adapter import StompAdapterFactory
from tunnelgw.adapters.xmpp.factory import XmppAdapterFactory
from tunnelgw.interfaces import IAdapterFactory
from tunnelgw.upstream.chain import ChainAdapterFactory

__all__ = ["ADAPTERS", "adapter_factory"]

ADAPTERS: dict[str, IAdapterFactory] = {
    factory.name: factory
    for factory in (
        RawAdapterFactory(),
        EchoAdapterFactory(),
        RfbAdapterFactory(),
        StompAdapterFactory(),
        XmppAdapterFactory(),
        ChainAdapterFactory(),
    )
}


def adapter_factory(name: str) -> IAdapterFactory:
    """
    The adapter factory called C{name} in the configuration.

    @raise KeyError: no such adapter.
    """
    return ADAPTERS[name]
