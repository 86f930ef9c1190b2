"""
The HTTP fallback against the WebSocket path, in one run: one gateway,
one echo service that allows both, the same Node client exchanges over
each in turn (bench/fallback_load.mjs): bytes echoed (throughput, and
the gateway's CPU per MB) and 32-byte round trips one at a time (median
and p99).  Rounds alternate the transports.

    .venv/bin/python bench/fallback.py [--rounds 3] [--mib 64]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import BIN, GATEWAY_CPUS, REPO, Processes, cpu_seconds, free_port, node_json  # noqa: E402

from tunnelgw.testing import public_realm  # noqa: E402

CLIENT = REPO / "tunnelgw" / "fallback" / "client" / "tunnelsocket.js"


def config(port: int) -> str:
    return f"""
[gateway]
listen = ["tcp:{port}:interface=127.0.0.1"]

{public_realm()}

[services.echo]
path = "/echo"
adapter = "echo"
realm = "public"
subprotocols = ["binary"]
allow_missing_origin = true
fallback = true
"""


def exchange(url: str, transport: str, nbytes: int) -> dict[str, Any]:
    cfg = {"url": url, "transport": transport, "bytes": nbytes, "pings": 300}
    env = {**os.environ, "TUNNELSOCKET": str(CLIENT)}
    return node_json("fallback_load.mjs", [json.dumps(cfg)], 300, env)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mib", type=int, default=64)
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tunnelgw-fallback-bench-"))
    port = free_port()
    path = work / "gw.toml"
    path.write_text(config(port))
    procs = Processes()
    nbytes = options.mib * 1024 * 1024
    results: dict[str, list[dict[str, Any]]] = {"websocket": [], "fallback": []}
    try:
        args = [str(BIN / "twistd"), "-n", "--pidfile=", "--logger", "tunnelgw.logs.json_observer"]
        gateway = procs.start([*args, "tunnelgw", "--config", str(path)], port, GATEWAY_CPUS, cwd=work)
        for round_ in range(options.rounds):
            order = ["websocket", "fallback"] if round_ % 2 == 0 else ["fallback", "websocket"]
            for transport in order:
                before = cpu_seconds(gateway)
                result = exchange(f"ws://127.0.0.1:{port}/echo", transport, nbytes)
                # the CPU of the whole exchange, round trips included, per MB each way
                result["cpu_ms_per_mb"] = (cpu_seconds(gateway) - before) * 1000 / (nbytes / 1e6)
                results[transport].append(result)
    finally:
        procs.stop()

    def median(transport: str, key: str) -> float:
        return statistics.median(r[key] for r in results[transport])

    print(
        f"{options.mib} MiB echoed each way, then 300 round trips of 32 B; median of {options.rounds} rounds"
    )
    print()
    print("| transport | MB/s each way | gateway CPU ms/MB | round trip p50 ms | p99 ms |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for transport in results:
        print(
            f"| {transport} | {median(transport, 'mb_per_s'):,.1f} | {median(transport, 'cpu_ms_per_mb'):,.2f}"
            f" | {median(transport, 'rtt_ms_p50'):.2f} | {median(transport, 'rtt_ms_p99'):.2f} |"
        )
    ws, fb = (median(t, "mb_per_s") for t in ("websocket", "fallback"))
    print()
    print(f"fallback throughput: {fb / ws:.2f}× the WebSocket's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
