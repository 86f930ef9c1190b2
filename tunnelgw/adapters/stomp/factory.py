"""
The C{stomp} adapter's factory: its options parsed, its adapters built.
"""

from __future__ import annotations

from typing import Any

from zope.interface import implementer

from tunnelgw.adapters.stomp.adapter import SUBPROTOCOLS, BrokerCredentials, StompAdapter, StompOptions
from tunnelgw.adapters.stomp.frames import Limits
from tunnelgw.config.values import (
    ConfigError,
    Table,
    file_text,
    positive_int_value,
    string_value,
    strings_value,
)
from tunnelgw.interfaces import IAdapter, IAdapterFactory, ITunnel

__all__ = ["StompAdapterFactory"]


def _credentials(entry: Table) -> BrokerCredentials:
    users = frozenset(entry.take("users", strings_value, tuple[str, ...]()))
    roles = frozenset(entry.take("roles", strings_value, tuple[str, ...]()))
    if not users and not roles:
        raise ConfigError(f'{entry.path}: set users or roles ("*" for every authenticated subject)')
    login = entry.require("login", string_value)
    passcode = entry.take("passcode", _string_or_empty, "")
    passcode_file = entry.take("passcode_file", string_value, None)
    if passcode_file is not None:
        if passcode:
            raise ConfigError(f"{entry.key('passcode_file')}: set passcode or passcode_file, not both")
        passcode = file_text(entry.key("passcode_file"), passcode_file).strip()
    host = entry.take("host", string_value, None)
    entry.done()
    return BrokerCredentials(users, roles, login, passcode, host)


def _string_or_empty(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string")
    return value


@implementer(IAdapterFactory)
class StompAdapterFactory:
    name = "stomp"
    needs_upstream = True
    subprotocols = tuple(SUBPROTOCOLS)

    def needs_policy(self, options: Any) -> bool:
        return True

    def parse_options(self, options: dict[str, Any], key: str) -> StompOptions:
        table = Table(options, key)
        defaults = Limits()
        limits = Limits(
            max_line=table.take("max_header_line", positive_int_value, defaults.max_line),
            max_headers=table.take("max_headers", positive_int_value, defaults.max_headers),
            max_body=table.take("max_body", positive_int_value, defaults.max_body),
        )
        parsed = StompOptions(
            limits=limits,
            message_type=table.choice("message_type", ("text", "binary"), "text"),
            virtual_host=table.take("virtual_host", string_value, "/"),
            max_subscriptions=table.take("max_subscriptions", positive_int_value, 64),
            credentials=tuple(_credentials(entry) for entry in table.tables("credentials")),
        )
        table.done()
        return parsed

    def build(self, tunnel: ITunnel) -> IAdapter:
        options = tunnel.service.adapter_options
        assert isinstance(options, StompOptions)
        return StompAdapter(tunnel, options)
