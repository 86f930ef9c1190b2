"""
The C{rfb} adapter's factory: its options parsed, its adapters built.
"""

from __future__ import annotations

from typing import Any

from zope.interface import implementer

from tunnelgw.adapters.rfb.adapter import RfbAdapter
from tunnelgw.adapters.rfb.codec import VNC_AUTH
from tunnelgw.adapters.rfb.options import RfbOptions, security_types_value
from tunnelgw.config.values import (
    ConfigError,
    Table,
    file_text,
    positive_int_value,
    string_value,
)
from tunnelgw.interfaces import IAdapter, IAdapterFactory, ITunnel

__all__ = ["RfbAdapterFactory"]


@implementer(IAdapterFactory)
class RfbAdapterFactory:
    name = "rfb"
    needs_upstream = True
    subprotocols = None  # "binary" or none, like raw

    def needs_policy(self, options: Any) -> bool:
        return True

    def parse_options(self, options: dict[str, Any], key: str) -> RfbOptions:
        table = Table(options, key)
        security = table.take("security_types", security_types_value, frozenset({VNC_AUTH}))
        password = table.take("password", string_value, None)
        password_file = table.take("password_file", string_value, None)
        max_cut_text = table.take("max_cut_text", positive_int_value, 256 * 1024)
        max_encodings = table.take("max_encodings", positive_int_value, 128)
        on_revoke = table.choice("on_revoke", ("close", "view_only"), "close")
        table.done()
        if password_file is not None:
            if password is not None:
                raise ConfigError(f"{table.key('password_file')}: set password or password_file, not both")
            password = file_text(table.key("password_file"), password_file).strip()
        if password is not None and VNC_AUTH not in security:
            raise ConfigError(f'{table.key("password")}: injection needs "vnc" in security_types')
        return RfbOptions(security, password, max_cut_text, max_encodings, on_revoke)

    def build(self, tunnel: ITunnel) -> IAdapter:
        options = tunnel.service.adapter_options
        assert isinstance(options, RfbOptions)
        return RfbAdapter(tunnel, options)
