"""
An example tunnelgw login module, found through twisted.plugin.

Nothing here imports the reactor: plugin modules are imported while the
plugin cache is built, possibly before a reactor is chosen.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from twisted.plugin import IPlugin
from zope.interface import implementer

from tunnelgw.config import ConfigError, Table, string_value, strings_value
from tunnelgw.interfaces import ILoginModule, ILoginModuleFactory
from tunnelgw.security import Principal
from tunnelgw.security.jaas import LoginFailed


@implementer(ILoginModule)
class StaticTokenModule:
    def initialize(self, subject: Any, callbacks: Any, shared_state: dict[str, Any], options: Any) -> None:
        self.subject, self.callbacks, self.options = subject, callbacks, options
        self.ok = False

    def login(self) -> bool:
        token = self.callbacks.bearer
        if not token:
            raise LoginFailed("no bearer token")
        digest = hashlib.sha256(token.encode("utf-8")).hexdigest()
        if not hmac.compare_digest(digest, self.options["token_sha256"]):
            raise LoginFailed("unknown service token")
        self.ok = True
        return True

    def commit(self) -> bool:
        if self.ok:
            self.subject.principals.add(Principal("user", self.options["user"]))
            self.subject.principals.update(Principal("role", r) for r in self.options["roles"])
            self.subject.attributes.setdefault("method", "static-token")
        return self.ok

    def abort(self) -> None:
        self.ok = False

    def logout(self) -> None:
        self.ok = False

    def revalidate(self, subject: Any) -> bool:
        return True


@implementer(IPlugin, ILoginModuleFactory)
class StaticTokenFactory:
    name = "static_token"

    def parse_config(self, options: dict[str, Any], key: str) -> dict[str, Any]:
        table = Table(options, key)
        digest = table.require("token_sha256", string_value).lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ConfigError(f"{table.key('token_sha256')}: expected 64 hex digits")
        parsed = {
            "token_sha256": digest,
            "user": table.require("user", string_value),
            "roles": table.take("roles", strings_value, ()),
        }
        table.done()
        return parsed

    def create(self) -> StaticTokenModule:
        return StaticTokenModule()


static_token = StaticTokenFactory()
