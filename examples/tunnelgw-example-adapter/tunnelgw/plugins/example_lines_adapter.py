"""
An example tunnelgw protocol adapter, found through twisted.plugin: a
line-oriented text protocol (memcached, Redis inline commands, SMTP-like
services) over WebSocket text messages, each command authorized.

Each client text message is one command line; the adapter sends it to the
backend ended by CRLF, after asking the service's policy whether the user
may run it (C{permits("command", VERB)}).  Each line from the backend
becomes one text message.  A binary message, a line with CR or LF in it,
a line over C{max_line}, a command not allowed: the tunnel closes with
the code that says which (1003, 1008, 1009), and what came before it is
delivered.

Nothing here imports the reactor: plugin modules are imported while the
plugin cache is built, possibly before a reactor is chosen.
"""

from __future__ import annotations

from typing import Any

from twisted.plugin import IPlugin
from zope.interface import implementer

from tunnelgw.config import Table, positive_int_value
from tunnelgw.interfaces import IAdapter, IAdapterFactory, ITunnel


@implementer(IAdapter)
class LinesAdapter:
    def __init__(self, tunnel: ITunnel, max_line: int) -> None:
        self.tunnel = tunnel
        self.max_line = max_line
        self.partial = b""

    def client_message(self, payload: bytes, is_binary: bool) -> None:
        if is_binary:
            self.tunnel.fail(1003, "send commands as text messages")
            return
        if b"\r" in payload or b"\n" in payload:
            self.tunnel.fail(1008, "one command per message, without line breaks")
            return
        if len(payload) > self.max_line:
            self.tunnel.fail(1009, f"a command is longer than {self.max_line} bytes")
            return
        verb = payload.split(b" ", 1)[0].decode("utf-8").upper()
        if not self.tunnel.permits("command", verb):
            self.tunnel.fail(1008, f"command {verb} is not allowed")
            return
        self.tunnel.send_backend(payload + b"\r\n")

    def backend_data(self, data: bytes) -> None:
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        if len(self.partial) > self.max_line:
            self.tunnel.fail(1009, f"the backend sent a line longer than {self.max_line} bytes")
            return
        for line in lines:
            self.tunnel.send_client(line.rstrip(b"\r"), False)


@implementer(IPlugin, IAdapterFactory)
class LinesAdapterFactory:
    name = "lines"
    needs_upstream = True
    subprotocols = ("text-lines",)

    def parse_options(self, options: dict[str, Any], key: str) -> dict[str, int]:
        table = Table(options, key)
        parsed = {"max_line": table.take("max_line", positive_int_value, 4096)}
        table.done()
        return parsed

    def needs_policy(self, options: Any) -> bool:
        return True  # every command is authorized: deny by default

    def build(self, tunnel: ITunnel) -> IAdapter:
        return LinesAdapter(tunnel, tunnel.service.adapter_options["max_line"])


lines = LinesAdapterFactory()
