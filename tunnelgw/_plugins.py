"""
Finding login modules and policies: the shipped ones, then those of other
installed packages (twisted.plugin, in L{tunnelgw.plugins}).
"""

from __future__ import annotations

from typing import Any

from twisted.plugin import getPlugins

from tunnelgw.config.values import ConfigError
from tunnelgw.logs import Logger

log = Logger()


def discover(interface: Any, builtins: dict[str, Any]) -> dict[str, Any]:
    """
    The factories providing C{interface}, by name: C{builtins} first, then
    plugins.  A plugin may not take a name already taken.

    @raise ConfigError: two factories share a name.
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
