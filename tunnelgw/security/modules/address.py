"""
C{address}: admits or refuses by client address.  Options: C{allow} (CIDR
networks; when given, only these) and C{deny} (CIDR networks, checked
first).  Usually C{requisite}, in front of the modules that check
credentials.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from zope.interface import implementer

from tunnelgw.config.values import ConfigError, Table, strings_value
from tunnelgw.errors import LoginFailed
from tunnelgw.interfaces import ILoginModule, ILoginModuleFactory
from tunnelgw.security import Principal
from tunnelgw.security.modules.base import BaseModule

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class AddressOptions:
    allow: tuple[Network, ...]
    deny: tuple[Network, ...]


def _networks(key: str, value: Any) -> tuple[Network, ...]:
    networks = []
    for i, text in enumerate(strings_value(key, value)):
        try:
            networks.append(ipaddress.ip_network(text, strict=True))
        except ValueError as e:
            raise ConfigError(f"{key}[{i}]: {e}") from None
    return tuple(networks)


@implementer(ILoginModule)
class AddressFilter(BaseModule):
    def authenticate(self) -> bool:
        try:
            address = ipaddress.ip_address(self.callbacks.address)
        except ValueError:
            raise LoginFailed("client address is not an IP address") from None
        if any(address in net for net in self.options.deny):
            raise LoginFailed(f"address {address} is denied")
        if self.options.allow and not any(address in net for net in self.options.allow):
            raise LoginFailed(f"address {address} is not allowed")
        return True

    def reconfirm(self, subject: Any) -> bool:
        """After a reload: the subject's address against the new networks."""
        return self._succeeded(self.authenticate())

    def principals(self, result: Any) -> tuple[set[Principal], dict[str, Any]]:
        return set(), {"address": self.callbacks.address}


@implementer(ILoginModuleFactory)
class AddressFilterFactory:
    name = "address"

    def parse_config(self, options: dict[str, Any], key: str) -> AddressOptions:
        table = Table(options, key)
        parsed = AddressOptions(table.take("allow", _networks, ()), table.take("deny", _networks, ()))
        table.done()
        if not parsed.allow and not parsed.deny:
            raise ConfigError(f"{key}: give allow, deny or both")
        return parsed

    def create(self) -> AddressFilter:
        return AddressFilter()
