"""
An example tunnelgw login module reading a request header, found through
twisted.plugin: C{api_key} admits a client whose API key (by default in
C{X-API-Key}) has a configured SHA-256 digest, as the user and roles that
key names.  Keys are compared in constant time; only digests are
configured, and no key is ever logged.

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
from tunnelgw.errors import LoginFailed
from tunnelgw.interfaces import ILoginModule, ILoginModuleFactory
from tunnelgw.security import Principal
from tunnelgw.security.modules.base import BaseModule


@implementer(ILoginModule)
class ApiKeyModule(BaseModule):
    def authenticate(self) -> dict[str, Any]:
        key = self.callbacks.header(self.options["header"])
        if not key:
            raise LoginFailed(f"no single {self.options['header']} header")
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
        for entry in self.options["keys"]:
            if hmac.compare_digest(digest, entry["sha256"]):
                return entry
        raise LoginFailed("unknown API key")

    def principals(self, entry: dict[str, Any]) -> tuple[set[Principal], dict[str, Any]]:
        found = {Principal("user", entry["user"])} | {Principal("role", r) for r in entry["roles"]}
        return found, {"method": "api-key"}


@implementer(IPlugin, ILoginModuleFactory)
class ApiKeyFactory:
    name = "api_key"

    def parse_config(self, options: dict[str, Any], key: str) -> dict[str, Any]:
        table = Table(options, key)
        keys = []
        for entry in table.tables("keys", required=True):
            digest = entry.require("sha256", string_value).lower()
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ConfigError(f"{entry.key('sha256')}: expected 64 hex digits")
            keys.append(
                {
                    "sha256": digest,
                    "user": entry.require("user", string_value),
                    "roles": entry.take("roles", strings_value, tuple[str, ...]()),
                }
            )
            entry.done()
        parsed = {"header": table.take("header", string_value, "X-API-Key"), "keys": keys}
        table.done()
        return parsed

    def create(self) -> ApiKeyModule:
        return ApiKeyModule()


api_key = ApiKeyFactory()
