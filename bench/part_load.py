"""
The CPU a handshake costs against how many are in flight: tunnelgw and
the bare Twisted server of bench/floor.py (accept, connect the backend, a
canned 101, the close: no WebSocket), each pinned alone on core 0 as in
bench/run.py, the Node load client and echo backend on the other cores.
A process that is not kept busy sleeps in epoll_wait between events and
wakes for each; the fewer handshakes in flight, the fewer events each
wake-up serves.  Two workers sharing a burst (bench/users.py) each see
about half of it, which is what this measures for one.

    .venv/bin/python bench/part_load.py [--in-flight 100 30 10 3] [--seconds 3] [--rounds 3]
                                        [--client-on-gateway-core]

With C{--client-on-gateway-core} the load client shares core 0 with the
process measured, as it shares a core with one of two workers on a
two-core machine.

Prints one JSON line: for each target and number in flight, the medians
over the rounds of handshakes/s and of the process's CPU µs per handshake.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
from typing import Any

from harness import BIN, GATEWAY_CPUS, HERE, PEER_CPUS, Processes, cpu_seconds, free_port, load, start_gateway


def handshakes(
    proc: subprocess.Popen[bytes], port: int, in_flight: int, seconds: float, client: set[int] | None
) -> tuple[float, float]:
    before = cpu_seconds(proc)
    result = load(
        "--mode", "handshakes", "--conns", str(in_flight), "--seconds", str(seconds),
        "--url", f"ws://127.0.0.1:{port}/raw", cpus=client,
    )  # fmt: skip
    return result["per_s"], (cpu_seconds(proc) - before) * 1e6 / max(1, result["count"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--in-flight", type=int, nargs="+", default=[100, 30, 10, 3])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--client-on-gateway-core",
        action="store_true",
        help="the load client pinned on the gateways' core, not the others",
    )
    options = parser.parse_args()
    client = GATEWAY_CPUS if options.client_on_gateway_core else PEER_CPUS
    procs = Processes()
    try:
        echo = free_port()
        procs.start(["node", str(HERE / "servers.js"), "tcp-echo", str(echo)], echo, PEER_CPUS)
        targets = {"tunnelgw": free_port(), "twisted_floor": free_port()}
        started = {"tunnelgw": start_gateway(procs, targets["tunnelgw"], echo)}
        floor = [str(BIN / "python"), str(HERE / "floor.py"), "twisted"]
        started["twisted_floor"] = procs.start(
            [*floor, str(targets["twisted_floor"]), str(echo)], targets["twisted_floor"], GATEWAY_CPUS
        )
        runs: dict[str, dict[int, list[tuple[float, float]]]] = {name: {} for name in targets}
        for _ in range(options.rounds):
            for in_flight in options.in_flight:
                for name, port in targets.items():
                    measured = handshakes(started[name], port, in_flight, options.seconds, client)
                    runs[name].setdefault(in_flight, []).append(measured)
    finally:
        procs.stop()
    results: dict[str, Any] = {
        name: {
            str(n): {
                "handshakes_per_s": round(statistics.median(r for r, _ in measured)),
                "cpu_us_per_handshake": round(statistics.median(c for _, c in measured)),
            }
            for n, measured in by_count.items()
        }
        for name, by_count in runs.items()
    }
    print(json.dumps(results))


if __name__ == "__main__":
    main()
