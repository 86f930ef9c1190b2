"""
An adapter against the broker's own WebSocket endpoint, in one run:
STOMP publish/subscribe through tunnelgw's C{stomp} adapter to RabbitMQ's
STOMP port, against RabbitMQ's own Web-STOMP plugin, with the same load
client (bench/stomp_load.js: 4 connections, each subscribed to its own
topic and publishing 1 KiB bodies to it, 64 in flight).  Messages
received per second, and the gateway's CPU per message.  Rounds alternate
the two.

    bash bench/setup.sh && .venv/bin/python bench/adapters.py [--seconds 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from run import BIN, GATEWAY_CPUS, Processes, cpu_seconds, free_port  # noqa: E402

from tests.integration.rabbitmq import RabbitMQ  # noqa: E402


def config(port: int, stomp_port: int) -> str:
    return f"""
[gateway]
listen = ["tcp:{port}:interface=127.0.0.1"]

[realms.public]
[[realms.public.modules]]
module = "anonymous"
flag = "required"

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
"""


def stomp_load(url: str, seconds: float) -> dict[str, Any]:
    out = subprocess.run(
        ["node", str(HERE / "stomp_load.js"), "--url", url, "--seconds", str(seconds)],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        cwd=HERE,
    )
    lines = out.stdout.strip().splitlines()
    result: dict[str, Any] = json.loads(lines[-1]) if lines else {"error": out.stderr}
    if "error" in result:
        raise RuntimeError(f"{url}: {result['error']}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tunnelgw-adapters-bench-"))
    broker = RabbitMQ(work / "rabbitmq")
    (work / "rabbitmq").mkdir()
    procs = Processes()
    runs: dict[str, list[dict[str, Any]]] = {"stomp adapter": [], "RabbitMQ Web-STOMP": []}
    try:
        broker.start()
        port = free_port()
        path = work / "gw.toml"
        path.write_text(config(port, broker.stomp_port))
        twistd = [str(BIN / "twistd"), "-n", "--pidfile=", "--logger", "tunnelgw.logs.json_observer"]
        gateway = procs.start([*twistd, "tunnelgw", "--config", str(path)], port, GATEWAY_CPUS, cwd=work)
        urls = {
            "stomp adapter": f"ws://127.0.0.1:{port}/stomp",
            "RabbitMQ Web-STOMP": f"ws://127.0.0.1:{broker.web_stomp_port}/ws",
        }
        for round_number in range(options.rounds):
            names = list(urls) if round_number % 2 == 0 else list(urls)[::-1]
            for name in names:
                before = cpu_seconds(gateway)
                result = stomp_load(urls[name], options.seconds)
                if name == "stomp adapter":
                    # the warm-up second and the set-up are in it too: an upper bound
                    result["cpu_us_per_msg"] = (
                        (cpu_seconds(gateway) - before) * 1e6 / max(1, result["received"])
                    )
                runs[name].append(result)
    finally:
        procs.stop()
        broker.stop()
    rates = {name: statistics.median(r["msgs_per_s"] for r in results) for name, results in runs.items()}
    cpu = statistics.median(r["cpu_us_per_msg"] for r in runs["stomp adapter"])
    print("| endpoint | messages/s (1 KiB, 4 connections) | gateway CPU µs/message |")
    print("| --- | ---: | ---: |")
    print(f"| tunnelgw `stomp` adapter → RabbitMQ STOMP | {rates['stomp adapter']:,.0f} | {cpu:.1f} |")
    print(f"| RabbitMQ Web-STOMP | {rates['RabbitMQ Web-STOMP']:,.0f} | — |")
    print()
    print(f"stomp adapter: {rates['stomp adapter'] / rates['RabbitMQ Web-STOMP']:.2f}× Web-STOMP")
    return 0


if __name__ == "__main__":
    sys.exit(main())
