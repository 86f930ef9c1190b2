"""
Each adapter against the server's own WebSocket endpoint, in one run:
STOMP publish/subscribe through tunnelgw's C{stomp} adapter to RabbitMQ's
STOMP port against RabbitMQ's own Web-STOMP plugin (bench/stomp_load.js:
4 connections, each subscribed to its own topic and publishing 1 KiB
bodies to it, 64 in flight); XMPP message stanzas through the C{xmpp}
adapter to prosody's client port against prosody's own C{mod_websocket}
(bench/xmpp_load.js: 4 logged-in connections, each sending 1 KiB
messages to its own full JID, 64 in flight).  Messages received per
second, and the gateway's CPU per message.  Rounds alternate each pair.

    bash bench/setup.sh && .venv/bin/python bench/adapters.py [--seconds 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from harness import BIN, GATEWAY_CPUS, Processes, cpu_seconds, free_port, node_json, write_section  # noqa: E402

from tests.integration.prosody import DOMAIN, USERS, Prosody  # noqa: E402
from tests.integration.rabbitmq import RabbitMQ  # noqa: E402
from tunnelgw.testing import public_realm  # noqa: E402


def config(port: int, stomp_port: int, c2s_port: int = 9) -> str:
    return f"""
[gateway]
listen = ["tcp:{port}:interface=127.0.0.1"]

{public_realm()}

[policies.all]
[[policies.all.rules]]
roles = ["*"]
actions = ["connect", "subscribe", "send"]
resources = ["*"]

[services.stomp]
path = "/stomp"
adapter = "stomp"
realm = "public"
policy = "all"
upstream = "tcp:127.0.0.1:{stomp_port}"
subprotocols = ["v12.stomp"]
allow_missing_origin = true

[services.xmpp]
path = "/xmpp"
adapter = "xmpp"
realm = "public"
upstream = "tcp:127.0.0.1:{c2s_port}"
subprotocols = ["xmpp"]
allow_missing_origin = true
[services.xmpp.xmpp]
domain = "{DOMAIN}"
backend_tls = "off"
"""


def load(script: str, url: str, seconds: float, *extra: str) -> dict[str, Any]:
    return node_json(script, ["--url", url, "--seconds", str(seconds), *extra], seconds + 60)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--write-docs", action="store_true", help="the table into docs/benchmarks.md")
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tunnelgw-adapters-bench-"))
    broker = RabbitMQ(work / "rabbitmq")
    (work / "rabbitmq").mkdir()
    (work / "prosody").mkdir()
    prosody = Prosody(work / "prosody")
    procs = Processes()
    pairs = {
        "stomp": ("stomp adapter", "RabbitMQ Web-STOMP"),
        "xmpp": ("xmpp adapter", "prosody mod_websocket"),
    }
    runs: dict[str, list[dict[str, Any]]] = {name: [] for pair in pairs.values() for name in pair}
    try:
        broker.start()
        prosody.start()
        port = free_port()
        path = work / "gw.toml"
        path.write_text(config(port, broker.stomp_port, prosody.c2s_port))
        twistd = [str(BIN / "twistd"), "-n", "--pidfile=", "--logger", "tunnelgw.logs.json_observer"]
        gateway = procs.start([*twistd, "tunnelgw", "--config", str(path)], port, GATEWAY_CPUS, cwd=work)
        xmpp_login = ("--domain", DOMAIN, "--user", "alice", "--password", USERS["alice"])
        loads: dict[str, tuple[str, str, tuple[str, ...]]] = {
            "stomp adapter": ("stomp_load.js", f"ws://127.0.0.1:{port}/stomp", ()),
            "RabbitMQ Web-STOMP": ("stomp_load.js", f"ws://127.0.0.1:{broker.web_stomp_port}/ws", ()),
            "xmpp adapter": ("xmpp_load.js", f"ws://127.0.0.1:{port}/xmpp", xmpp_login),
            "prosody mod_websocket": (
                "xmpp_load.js",
                f"ws://127.0.0.1:{prosody.http_port}/xmpp-websocket",
                xmpp_login,
            ),
        }
        for round_number in range(options.rounds):
            for pair in pairs.values():
                for name in pair if round_number % 2 == 0 else pair[::-1]:
                    script, url, extra = loads[name]
                    before = cpu_seconds(gateway)
                    result = load(script, url, options.seconds, *extra)
                    if name.endswith("adapter"):
                        # the warm-up second and the log-ins are in it too: an upper bound
                        spent = cpu_seconds(gateway) - before
                        result["cpu_us_per_msg"] = spent * 1e6 / max(1, result["received"])
                    runs[name].append(result)
    finally:
        procs.stop()
        prosody.stop()
        broker.stop()
    rates = {name: statistics.median(r["msgs_per_s"] for r in results) for name, results in runs.items()}
    lines = [
        f"Produced by `make bench` (`bench/adapters.py --seconds {options.seconds:g} --rounds"
        f" {options.rounds}`) on {datetime.date.today().isoformat()}: medians of {options.rounds} rounds.",
        "",
        "| endpoint | messages/s (1 KiB, 4 connections) | gateway CPU µs/message |",
        "| --- | ---: | ---: |",
    ]
    for adapter, server in pairs.values():
        cpu = statistics.median(r["cpu_us_per_msg"] for r in runs[adapter])
        lines.append(f"| tunnelgw `{adapter.split()[0]}` adapter | {rates[adapter]:,.0f} | {cpu:.1f} |")
        lines.append(f"| {server} | {rates[server]:,.0f} | — |")
    lines.append("")
    for adapter, server in pairs.values():
        lines.append(
            f"- `{adapter.split()[0]}`: {rates[adapter] / rates[server]:.2f}× {server} (target ≥ 1.0×)"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if options.write_docs:
        write_section("bench:adapters", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
