"""
C{anonymous}: admits everyone, for public services; it must be configured
explicitly.  Options: C{user} (a name to give the subject; default none)
and C{roles} (roles to give it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zope.interface import implementer

from tunnelgw.config.values import Table, string_value, strings_value
from tunnelgw.interfaces import ILoginModule, ILoginModuleFactory
from tunnelgw.security import Principal
from tunnelgw.security.modules.base import BaseModule, roles_of


@dataclass(frozen=True)
class AnonymousOptions:
    user: str | None
    roles: tuple[str, ...]


@implementer(ILoginModule)
class Anonymous(BaseModule):
    def authenticate(self) -> bool:
        return True

    def reconfirm(self, subject: Any) -> bool:
        """After a reload: it admits everyone, with the roles it now gives."""
        return self._succeeded(True)

    def principals(self, result: Any) -> tuple[set[Principal], dict[str, Any]]:
        found = roles_of(self.options.roles)
        if self.options.user:
            found.add(Principal("user", self.options.user))
        return found, {"method": "anonymous", "address": self.callbacks.address}


@implementer(ILoginModuleFactory)
class AnonymousFactory:
    name = "anonymous"

    def parse_config(self, options: dict[str, Any], key: str) -> AnonymousOptions:
        table = Table(options, key)
        parsed = AnonymousOptions(
            table.take("user", string_value, None), table.take("roles", strings_value, ())
        )
        table.done()
        return parsed

    def create(self) -> Anonymous:
        return Anonymous()
