"""
tunnelgw benchmarks, side by side in one run: the raw tunnel through
tunnelgw, the same through websockify (`binary`), and direct TCP to the
same backend; and a VNC framebuffer stream through tunnelgw's rfb adapter,
its raw adapter, websockify and direct TCP.  The load client is Node `ws`
with bufferutil; its ceiling is measured against a Node `ws` echo server.

    make bench                       # or: .venv/bin/python bench/run.py [--seconds 5] [--write-docs]

Results go to bench/results/latest.json; --write-docs rewrites
docs/benchmarks.md with them.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import (  # noqa: E402
    BIN,
    GATEWAY_CPUS,
    PEER_CPUS,
    REPO,
    Processes,
    free_port,
    handshake_slices,
    idle_tunnels,
    kept_comparisons,
    load,
    start_gateway,
    wait_listening,
)
from report import markdown, ratios  # noqa: E402

SECTIONS = ("speed", "rfb", "idle")


def median_of(results: list[dict[str, Any]]) -> dict[str, Any]:
    """
    The median of every numeric field over repeated runs.
    """
    merged = dict(results[0])
    for key, value in results[0].items():
        if isinstance(value, (int, float)):
            merged[key] = statistics.median(r[key] for r in results)
    merged["runs"] = len(results)
    return merged


def run(seconds: float, only: tuple[str, ...] = SECTIONS, repeat: int = 3) -> dict[str, Any]:
    procs = Processes()
    results: dict[str, Any] = {}
    try:
        echo_port, wsecho_port, gw_port, wsfy_port, rfb_port, wsfy_rfb_port = (free_port() for _ in range(6))
        procs.start(["node", str(HERE / "servers.js"), "tcp-echo", str(echo_port)], echo_port, PEER_CPUS)
        procs.start(["node", str(HERE / "servers.js"), "rfb-stream", str(rfb_port)], rfb_port, PEER_CPUS)
        # the client's ceiling is measured against a server on the gateway's core
        servers = {
            "client_ceiling_ws_echo": procs.start(
                ["node", str(HERE / "servers.js"), "ws-echo", str(wsecho_port)], wsecho_port, GATEWAY_CPUS
            ),
            "tunnelgw": start_gateway(procs, gw_port, echo_port, rfb_port),
        }
        for port, backend in ((wsfy_port, echo_port), (wsfy_rfb_port, rfb_port)):
            proc = procs.start(
                [str(BIN / "websockify"), f"127.0.0.1:{port}", f"127.0.0.1:{backend}"], port, GATEWAY_CPUS
            )
            servers.setdefault("websockify", proc)

        # what autobahn and Twisted do alone (bench/floor.py), for handshakes
        floors = {}
        for kind in ("autobahn", "twisted"):
            port = free_port()
            servers[f"floor_{kind}"] = procs.start(
                [str(BIN / "python"), str(HERE / "floor.py"), kind, str(port), str(echo_port)],
                port,
                GATEWAY_CPUS,
            )
            floors[f"floor_{kind}"] = ["--url", f"ws://127.0.0.1:{port}/"]

        targets = {
            "tunnelgw": ["--url", f"ws://127.0.0.1:{gw_port}/raw"],
            "websockify": ["--url", f"ws://127.0.0.1:{wsfy_port}/"],
            "direct_tcp": ["--tcp", f"127.0.0.1:{echo_port}"],
            "client_ceiling_ws_echo": ["--url", f"ws://127.0.0.1:{wsecho_port}/"],
        }
        s = str(seconds)
        # each measure's load, for `seconds` (handshakes: in slices)
        measures = {
            "throughput_1": ("--mode", "throughput", "--conns", "1"),
            "throughput_8": ("--mode", "throughput", "--conns", "8"),
            "rtt_32": ("--mode", "rtt", "--size", "32"),
            "handshakes": ("--mode", "handshakes", "--conns", "16"),
            # a burst well above Twisted's default backlog of 50 (which
            # dropped SYNs: a second's retransmission in the p99)
            "handshakes_burst": ("--mode", "handshakes", "--conns", "128"),
        }
        # every target of a measure, the floors among them for handshakes
        # (direct TCP has no handshake)
        measured_by = {key: [*targets, *floors] if key == "handshakes" else list(targets) for key in measures}
        measured_by["handshakes"].remove("direct_tcp")
        measured_by["handshakes_burst"] = ["tunnelgw", "websockify"]
        urls = {**targets, **floors}
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {name: {} for name in urls}
        for round_number in range(repeat) if "speed" in only else ():
            # Measure by measure, every target in turn, back to back, in the
            # opposite order every other round: this machine's speed drifts
            # by more than a tenth over tens of seconds, and targets measured
            # next to each other see the same speed.  The ratios are taken
            # round by round (see ratios()).
            for key, args in measures.items():
                names = measured_by[key] if round_number % 2 == 0 else measured_by[key][::-1]
                if key == "handshakes":
                    # in slices of a second, the targets interleaved: a
                    # disturbance of a few seconds (this machine has them:
                    # every process on it twice as slow for a while) falls
                    # on all of them rather than on one
                    sliced = handshake_slices(servers, urls, names, args, seconds)
                    for name in names:
                        runs[name].setdefault(key, []).append(sliced[name])
                    continue
                for name in names:
                    runs[name].setdefault(key, []).append(load(*args, "--seconds", s, *urls[name]))
            print("round done", flush=True)
        for name, measured in runs.items():
            if measured:
                results[name] = {key: median_of(values) for key, values in measured.items()}
                for key, values in measured.items():
                    results[name][key]["rounds"] = values
                print(name, json.dumps(results[name]), flush=True)

        # A VNC framebuffer stream (server to client, as a VNC session's bulk
        # is): through the rfb adapter, which parsed the handshake and parses
        # every client message, against the raw adapter and websockify.
        rfb_targets = {
            "tunnelgw_rfb": ["--url", f"ws://127.0.0.1:{gw_port}/rfb"],
            "tunnelgw_raw": ["--url", f"ws://127.0.0.1:{gw_port}/raw-rfb"],
            "websockify": ["--url", f"ws://127.0.0.1:{wsfy_rfb_port}/"],
            "direct_tcp": ["--tcp", f"127.0.0.1:{rfb_port}"],
        }
        rfb_runs: dict[str, list[dict[str, Any]]] = {name: [] for name in rfb_targets}
        for _ in range(repeat) if "rfb" in only else ():
            for name, target in rfb_targets.items():
                rfb_runs[name].append(load("--mode", "rfb", "--seconds", s, *target))
        if "rfb" in only:
            results["rfb_stream"] = {name: median_of(values) for name, values in rfb_runs.items()}
            print("rfb_stream", json.dumps(results["rfb_stream"]), flush=True)

        # Each idle measurement on a fresh gateway: memory freed by one run
        # would otherwise be reused by the next and hide its cost.
        # A raw tunnel takes two descriptors, and one process may have 20,000
        # here: 10,000 raw tunnels take two processes on one reuseport: port.
        idle = (
            ("idle_echo_10000", "/echo", 10000, 1),
            ("idle_raw_9900", "/raw", 9900, 1),
            ("idle_raw_10000_2p", "/raw", 10000, 2),
        )
        for key, path, count, processes in idle if "idle" in only else ():
            port = free_port()
            fresh = [start_gateway(procs, port, echo_port, listener="reuseport") for _ in range(processes)]
            for gateway in fresh:  # the port opened with the first; each must listen
                wait_listening(gateway, port)
            results[key] = idle_tunnels(f"ws://127.0.0.1:{port}{path}", count, fresh)
            for gateway in fresh:
                gateway.terminate()
            for gateway in fresh:
                gateway.wait(30)
            print(key, results[key], flush=True)
    finally:
        procs.stop()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=3, help="rounds of the speed section; medians are kept")
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument(
        "--only", choices=SECTIONS, action="append", help="run only this section (repeatable); docs need all"
    )
    options = parser.parse_args()
    if options.only:
        results = run(options.seconds, tuple(options.only), options.repeat)
        print(json.dumps(results, indent=2))
        return 0
    from autobahn.websocket import USES_NVX

    results = run(options.seconds, SECTIONS, options.repeat)
    ws_version = json.loads((HERE / "node_modules" / "ws" / "package.json").read_text())["version"]
    meta = {
        "command": "make bench ARGS="
        + shlex.quote(
            "--write-docs"
            + (f" --seconds {options.seconds:g}" if options.seconds != 5 else "")
            + (f" --repeat {options.repeat}" if options.repeat != 3 else "")
        ),
        "date": datetime.date.today().isoformat(),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, Node {subprocess.check_output(['node', '--version'], text=True).strip()}",
        "seconds": options.seconds,
        "repeat": options.repeat,
        "pinning": (
            "The gateway under test (tunnelgw, or websockify and its children) runs alone on core 0;"
            " the load client and the echo server share the other core(s)."
            if GATEWAY_CPUS
            else "One core: nothing is pinned."
        ),
        "ws": ws_version,
        "nvx": USES_NVX,
    }
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(
        json.dumps({"meta": meta, "results": results, "ratios": ratios(results)}, indent=2)
    )
    text = markdown(results, meta)
    print(text)
    if options.write_docs:
        path = REPO / "docs" / "benchmarks.md"
        path.write_text(text + kept_comparisons(path.read_text() if path.exists() else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
