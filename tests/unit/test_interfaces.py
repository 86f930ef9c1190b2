"""
Every implementation provides its interface (verifyObject), and the public
surface of the package is pinned.
"""

from __future__ import annotations

from twisted.internet.interfaces import IHalfCloseableProtocol, IPullProducer, IStreamClientEndpoint
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

import tunnelgw
from tunnelgw.adapters.echo import EchoAdapter
from tunnelgw.adapters.raw import RawAdapter
from tunnelgw.adapters.stomp.adapter import StompAdapter, StompOptions
from tunnelgw.config.model import ServiceConfig
from tunnelgw.interfaces import IAdapter, IAdapterFactory, IAuthenticator, ITunnel
from tunnelgw.registry import shipped_adapters
from tunnelgw.security import PassThroughAuthenticator, Subject
from tunnelgw.testing import FakeEndpoint, HalfCloseStringTransport
from tunnelgw.tunnel.flow import FlushWatcher
from tunnelgw.tunnel.legs import BackendProtocol
from tunnelgw.tunnel.registry import TunnelRegistry
from tunnelgw.tunnel.relay import Tunnel


def tunnel() -> Tunnel:
    return Tunnel(
        reactor=Clock(),
        service=ServiceConfig(name="s", path="/s", adapter="echo", allow_no_subprotocol=True),
        subprotocol=None,
        conn_id="c",
        peer="p",
        subject=Subject(),
        adapter_factory=shipped_adapters()["echo"],
        backend=None,
        registry=TunnelRegistry(),
    )


def test_adapter_factories() -> None:
    assert set(shipped_adapters()) == {"raw", "echo", "rfb", "stomp", "xmpp", "chain"}
    for name, factory in shipped_adapters().items():
        assert verifyObject(IAdapterFactory, factory)
        assert factory.name == name


def test_adapters() -> None:
    t = tunnel()
    assert verifyObject(ITunnel, t)
    assert verifyObject(IAdapter, RawAdapter(t))
    assert verifyObject(IAdapter, EchoAdapter(t))
    assert verifyObject(IAdapter, StompAdapter(t, StompOptions()))


def test_other_implementations() -> None:
    assert verifyObject(IAuthenticator, PassThroughAuthenticator())
    assert verifyObject(IHalfCloseableProtocol, BackendProtocol())
    assert verifyObject(IPullProducer, FlushWatcher(HalfCloseStringTransport(), lambda: None))
    assert verifyObject(IStreamClientEndpoint, FakeEndpoint())


def test_public_surface() -> None:
    assert sorted(tunnelgw.__all__) == sorted(
        ["ConfigError", "GatewayConfig", "ServiceConfig", "load", "loads", "__version__"]
    )
    for name in tunnelgw.__all__:
        assert hasattr(tunnelgw, name)
