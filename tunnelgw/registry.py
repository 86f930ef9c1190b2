"""
What a configuration names, by kind: adapters, login modules,
authorization policies and upstream kinds.  The shipped ones come first;
other installed packages add theirs as plugins (twisted.plugin, in the
L{tunnelgw.plugins} package; not C{twisted.plugins}, so that a broken
plugin of another application cannot stop the gateway's start).  A plugin
may not take a name already taken.

Each list is found once per process (plugin discovery reads the plugin
caches); the admission pipeline asks here per connection, from memory.
"""

from __future__ import annotations

import functools
from typing import Any

from twisted.plugin import getPlugins

from tunnelgw.errors import ConfigError
from tunnelgw.interfaces import IAdapterFactory, ILoginModuleFactory, IPolicyFactory, IUpstreamKind
from tunnelgw.logs import Logger

__all__ = [
    "adapter",
    "adapters",
    "discover",
    "login_modules",
    "policies",
    "shipped_adapters",
    "shipped_login_modules",
    "upstream_kind",
    "upstream_kinds",
]

log = Logger()


def discover(interface: Any, builtins: dict[str, Any]) -> dict[str, Any]:
    """
    The factories providing C{interface}, by name: C{builtins} first, then
    plugins.

    @raise ConfigError: two share a name, or a plugin has none.
    """
    import tunnelgw.plugins

    found = dict(builtins)
    for plugin in getPlugins(interface, tunnelgw.plugins):
        name = getattr(plugin, "name", None)
        if not isinstance(name, str) or not name:
            raise ConfigError(f"plugin {plugin!r} has no name")
        if name in found:
            raise ConfigError(f"plugin {plugin!r}: the name {name!r} is already taken by {found[name]!r}")
        found[name] = plugin
    return found


def shipped_adapters() -> dict[str, IAdapterFactory]:
    """The adapter factories tunnelgw ships, by name."""
    from tunnelgw.adapters.echo import EchoAdapterFactory
    from tunnelgw.adapters.raw import RawAdapterFactory
    from tunnelgw.adapters.rfb.factory import RfbAdapterFactory
    from tunnelgw.adapters.stomp.factory import StompAdapterFactory
    from tunnelgw.adapters.xmpp.factory import XmppAdapterFactory
    from tunnelgw.upstream.chain import ChainAdapterFactory

    factories = (
        RawAdapterFactory(),
        EchoAdapterFactory(),
        RfbAdapterFactory(),
        StompAdapterFactory(),
        XmppAdapterFactory(),
        ChainAdapterFactory(),
    )
    return {factory.name: factory for factory in factories}


def shipped_login_modules() -> dict[str, ILoginModuleFactory]:
    """The login module factories tunnelgw ships, by name."""
    from tunnelgw.security.modules.address import AddressFilterFactory
    from tunnelgw.security.modules.anonymous import AnonymousFactory
    from tunnelgw.security.modules.assertion import AssertionFactory
    from tunnelgw.security.modules.client_cert import ClientCertFactory
    from tunnelgw.security.modules.introspection import IntrospectionFactory
    from tunnelgw.security.modules.jwt import JWTFactory
    from tunnelgw.security.modules.ldap import LDAPFactory
    from tunnelgw.security.modules.password_file import PasswordFileFactory

    factories = (
        AnonymousFactory(),
        AddressFilterFactory(),
        PasswordFileFactory(),
        JWTFactory(),
        ClientCertFactory(),
        IntrospectionFactory(),
        AssertionFactory(),
        LDAPFactory(),
    )
    return {factory.name: factory for factory in factories}


@functools.cache
def adapters() -> dict[str, IAdapterFactory]:
    """The adapter factories, by the name C{adapter = "..."} gives."""
    return discover(IAdapterFactory, shipped_adapters())


def adapter(name: str) -> IAdapterFactory:
    """
    The adapter factory called C{name}.

    @raise KeyError: no such adapter.
    """
    return adapters()[name]


@functools.cache
def login_modules() -> dict[str, ILoginModuleFactory]:
    """The login module factories, by the name C{module = "..."} gives."""
    return discover(ILoginModuleFactory, shipped_login_modules())


@functools.cache
def policies() -> dict[str, IPolicyFactory]:
    """The policy factories, by the name C{kind = "..."} gives."""
    from tunnelgw.security.policy import POLICIES

    return discover(IPolicyFactory, POLICIES)


@functools.cache
def upstream_kinds() -> tuple[IUpstreamKind, ...]:
    """
    The upstream kinds in the order they are asked whether they claim a
    description: C{tcp}, C{gateway}, C{reverse}, the plugins', and the
    catch-all C{endpoint} last.
    """
    from tunnelgw.upstream.kinds import BUILTIN_FIRST, BUILTIN_LAST

    named = discover(IUpstreamKind, {kind.name: kind for kind in BUILTIN_FIRST + BUILTIN_LAST})
    plugins = tuple(kind for name, kind in named.items() if kind not in BUILTIN_FIRST + BUILTIN_LAST)
    return BUILTIN_FIRST + plugins + BUILTIN_LAST


@functools.lru_cache(maxsize=1024)
def upstream_kind(description: str) -> IUpstreamKind:
    """The first kind that claims C{description} (at worst the catch-all)."""
    for kind in upstream_kinds():
        if kind.claims(description):
            return kind
    raise AssertionError("the endpoint kind claims every description")
