"""
A real XMPP client over plain TCP (slixmpp), the other party of the XMPP
integration tests: it logs in directly to the server, prints
{"event": "online"}, answers every chat message with "pong: <body>"
(printing {"event": "message", ...}), and leaves when its standard input
closes.

Usage: python xmpp_tcp_peer.py '<json>' with host, port, jid, password,
and ca (a CA file: STARTTLS against it; without it, plaintext PLAIN).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
from typing import Any

import slixmpp


def say(**event: Any) -> None:
    print(json.dumps(event), flush=True)


class Peer(slixmpp.ClientXMPP):  # type: ignore[misc]
    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__(cfg["jid"], cfg["password"])
        self.enable_direct_tls = False
        if cfg.get("ca"):
            self.enable_starttls = True
            self.ssl_context = ssl.create_default_context(cafile=cfg["ca"])
        else:
            self.enable_starttls = False
            self.enable_plaintext = True
        self.add_event_handler("session_start", self.started)
        self.add_event_handler("message", self.message)
        self.add_event_handler("failed_auth", lambda *_: say(event="failed_auth"))

    async def started(self, _: Any) -> None:
        self.send_presence()
        await self.get_roster()
        say(event="online", jid=str(self.boundjid))

    def message(self, msg: Any) -> None:
        if msg["type"] in ("chat", "normal") and msg["body"]:
            say(event="message", frm=str(msg["from"].bare), body=msg["body"])
            msg.reply(f"pong: {msg['body']}").send()


async def main() -> None:
    cfg = json.loads(sys.argv[1])
    peer = Peer(cfg)
    peer.register_plugin("xep_0199")
    if not cfg.get("ca"):
        peer["feature_mechanisms"].unencrypted_plain = True
    peer.connect(cfg["host"], cfg["port"])
    loop = asyncio.get_running_loop()
    # leave when the test closes our standard input
    await loop.run_in_executor(None, sys.stdin.read)
    peer.disconnect()
    await asyncio.sleep(0.3)


if __name__ == "__main__":
    asyncio.run(main())
