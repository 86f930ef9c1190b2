"""
The C{raw} adapter: binary WebSocket messages to and from a byte stream,
as websockify and noVNC do with the C{binary} subprotocol or none.
"""

from __future__ import annotations

from typing import Any

from zope.interface import implementer

from tunnelgw.config.values import Table
from tunnelgw.interfaces import IAdapter, IAdapterFactory, ITunnel

__all__ = ["RawAdapter", "RawAdapterFactory"]

UNSUPPORTED_DATA = 1003


@implementer(IAdapter)
class RawAdapter:
    """
    Binary messages become backend bytes; backend bytes become binary
    messages.  Text messages are refused with 1003 unless the service sets
    C{allow_text}, in which case their UTF-8 bytes are forwarded.
    """

    def __init__(self, tunnel: ITunnel) -> None:
        self._tunnel = tunnel
        self._allow_text: bool = tunnel.service.allow_text

    def client_message(self, payload: bytes, is_binary: bool) -> None:
        if is_binary or self._allow_text:
            self._tunnel.send_backend(payload)
        else:
            self._tunnel.fail(UNSUPPORTED_DATA, "text messages are not accepted by this service")

    def backend_data(self, data: bytes) -> None:
        self._tunnel.send_client(data, True)


@implementer(IAdapterFactory)
class RawAdapterFactory:
    name = "raw"
    needs_upstream = True
    subprotocols = None

    def needs_policy(self, options: Any) -> bool:
        return False

    def parse_options(self, options: dict[str, Any], key: str) -> None:
        Table(options, key).done()

    def build(self, tunnel: ITunnel) -> IAdapter:
        return RawAdapter(tunnel)
