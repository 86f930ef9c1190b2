"""
The C{echo} adapter: every message comes back as it went, text as text,
binary as binary.  For health checks and RFC 6455 conformance runs.
"""

from __future__ import annotations

from typing import Any

from zope.interface import implementer

from tunnelgw.config.values import Table
from tunnelgw.interfaces import IAdapter, IAdapterFactory, ITunnel

__all__ = ["EchoAdapter", "EchoAdapterFactory"]


@implementer(IAdapter)
class EchoAdapter:
    def __init__(self, tunnel: ITunnel) -> None:
        self._tunnel = tunnel

    def client_message(self, payload: bytes, is_binary: bool) -> None:
        self._tunnel.send_client(payload, is_binary)

    def backend_data(self, data: bytes) -> None:
        raise AssertionError("the echo adapter has no backend")


@implementer(IAdapterFactory)
class EchoAdapterFactory:
    name = "echo"
    needs_upstream = False
    subprotocols = None

    def needs_policy(self, options: Any) -> bool:
        return False

    def parse_options(self, options: dict[str, Any], key: str) -> None:
        Table(options, key).done()

    def build(self, tunnel: ITunnel) -> IAdapter:
        return EchoAdapter(tunnel)
