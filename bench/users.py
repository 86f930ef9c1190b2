"""
What users run, side by side in one run: tunnelgw's raw tunnel against
websockify and Twisted's own TCP proxy (the floor under a tunnel's
bytes), over plain TCP and over TLS, with the loads users put on them:
bulk (64 KiB messages, 1 and 8 connections), pipelined small messages
(8 connections, 32 B and 1 KiB, 64 in flight on each), ping-pong (32 B),
and bursts of 100 handshakes at once (over TLS, full and resumed).  The
gateway's CPU is measured for each load: per MB, per message, per round
trip, per handshake.  Rounds alternate the order of the targets.  Also:
one and two worker processes in the same conditions (neither pinned); a
gateway whose TLS writes take the public path (the shortcut
C{tls_writes} off), over TLS; and, after the rounds, the memory an idle
tunnel holds over plain TCP and over TLS, each on a fresh gateway.

    bash bench/setup.sh && .venv/bin/python bench/users.py [--seconds 2] [--rounds 3]

Results: bench/results/users.json, and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import (  # noqa: E402
    BIN,
    GATEWAY_CPUS,
    PEER_CPUS,
    Processes,
    cpu_seconds,
    free_port,
    idle_tunnels,
    load,
    write_section,
)

from tunnelgw._compat import ENVIRONMENT  # noqa: E402
from tunnelgw.testing import public_realm  # noqa: E402

LOADS: dict[str, tuple[str, ...]] = {
    "bulk_1": ("--mode", "throughput", "--conns", "1"),
    "bulk_8": ("--mode", "throughput", "--conns", "8"),
    "small_32": ("--mode", "throughput", "--conns", "8", "--size", "32", "--window", "64"),
    "small_1k": ("--mode", "throughput", "--conns", "8", "--size", "1024", "--window", "64"),
    "rtt_32": ("--mode", "rtt", "--size", "32"),
    "handshakes_100": ("--mode", "handshakes", "--conns", "100"),
    "handshakes_100_resumed": ("--mode", "handshakes", "--conns", "100", "--resume", "1"),
}


def certificate(work: Path) -> tuple[Path, Path]:
    cert, key = work / "cert.pem", work / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        + ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-days", "2"]
        + ["-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


def gateway_config(port: int, tls_port: int, echo: int, cert: Path, key: Path, listener: str = "tcp") -> str:
    return f"""
[gateway]
listen = ["{listener}:{port}:interface=127.0.0.1:backlog=4096"]
max_connections = 20000
max_connections_per_address = 20000
handshake_rate_per_address = 1000000
handshake_burst_per_address = 1000000

[[gateway.tls_listeners]]
endpoint = "tcp:{tls_port}:interface=127.0.0.1:backlog=4096"
certificate = "{cert}"
private_key = "{key}"

{public_realm()}

[services.raw]
path = "/raw"
adapter = "raw"
realm = "public"
upstream = "tcp:127.0.0.1:{echo}"
subprotocols = ["binary"]
allow_no_subprotocol = true
allow_missing_origin = true
"""


def measure(proc: subprocess.Popen[bytes], key: str, target: list[str], seconds: float) -> dict[str, Any]:
    before = cpu_seconds(proc)
    result = load(*LOADS[key], "--seconds", str(seconds), *target)
    cpu = cpu_seconds(proc) - before
    if result["mode"] == "throughput":
        # CPU over the whole run (the warm-up second too): per unit counted,
        # scaled by the run's share of counted time
        share = result["seconds"] / (result["seconds"] + 1.0)
        result["cpu_ms_per_mb"] = cpu * share * 1000 / max(1e-9, result["bytes"] / 1e6)
        result["cpu_us_per_msg"] = cpu * share * 1e6 / max(1, result["bytes"] / result["size"])
    elif result["mode"] == "rtt":
        share = result["count"] / (result["count"] + result["msgs_per_s"])  # the warm-up second's round trips
        result["cpu_us_per_rtt"] = cpu * share * 1e6 / max(1, result["count"])
    else:
        result["cpu_us_per_handshake"] = cpu * 1e6 / max(1, result["count"])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--idle", type=int, default=5000, help="idle tunnels held, plain and TLS")
    parser.add_argument("--write-docs", action="store_true", help="the tables into docs/benchmarks.md")
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tunnelgw-users-bench-"))
    cert, key = certificate(work)
    procs = Processes()
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    try:
        echo = free_port()
        procs.start(["node", str(HERE / "servers.js"), "tcp-echo", str(echo)], echo, PEER_CPUS)
        ports = {name: free_port() for name in ("gw", "gw_tls", "wsfy", "wsfy_tls", "floor", "floor_tls")}
        config = work / "gw.toml"
        config.write_text(gateway_config(ports["gw"], ports["gw_tls"], echo, cert, key))
        twistd = [str(BIN / "twistd"), "-n", "--pidfile=", "--logger", "tunnelgw.logs.json_observer"]
        gateway = procs.start(
            [*twistd, "tunnelgw", "--config", str(config)], ports["gw"], GATEWAY_CPUS, cwd=work
        )
        # one and two worker processes on one reuseport: port each (tunnelgw
        # workers), not pinned: the kernel spreads them and the load over both cores
        workers: dict[int, subprocess.Popen[bytes]] = {}
        for count, name in ((2, "workers"), (1, "one")):
            port, tls_port = ports[name], ports[f"{name}_tls"] = free_port(), free_port()
            path = work / f"{name}.toml"
            path.write_text(
                gateway_config(port, tls_port, echo, cert, key, "reuseport").replace(
                    f'endpoint = "tcp:{tls_port}', f'endpoint = "reuseport:{tls_port}'
                )
            )
            workers[count] = procs.start(
                [str(BIN / "tunnelgw"), "workers", "--count", str(count), "--config", str(path)]
                + ["--logger", "tunnelgw.logs.json_observer"],
                port,
                None,
                cwd=work,
            )
        two, one = workers[2], workers[1]
        # the same gateway, its TLS writes through Twisted's TLS layer's own write
        public_config = work / "public.toml"
        ports["public"], ports["public_tls"] = free_port(), free_port()
        public_config.write_text(gateway_config(ports["public"], ports["public_tls"], echo, cert, key))
        public = procs.start(
            [*twistd, "tunnelgw", "--config", str(public_config)],
            ports["public"],
            GATEWAY_CPUS,
            cwd=work,
            env={**os.environ, ENVIRONMENT: "tls_writes"},
        )
        time.sleep(2)  # the second worker listens too
        websockify = str(BIN / "websockify")
        wsfy = procs.start(
            [websockify, f"127.0.0.1:{ports['wsfy']}", f"127.0.0.1:{echo}"], ports["wsfy"], GATEWAY_CPUS
        )
        wsfy_tls = procs.start(
            [websockify, "--cert", str(cert), "--key", str(key), "--ssl-only"]
            + [f"127.0.0.1:{ports['wsfy_tls']}", f"127.0.0.1:{echo}"],
            ports["wsfy_tls"],
            GATEWAY_CPUS,
        )
        floor = [str(BIN / "python"), str(HERE / "floor.py"), "proxy"]
        proxy = procs.start([*floor, str(ports["floor"]), str(echo)], ports["floor"], GATEWAY_CPUS)
        proxy_tls = procs.start(
            [*floor, str(ports["floor_tls"]), str(echo), str(cert), str(key)],
            ports["floor_tls"],
            GATEWAY_CPUS,
        )
        targets: dict[str, tuple[subprocess.Popen[bytes], list[str]]] = {
            "tunnelgw": (gateway, ["--url", f"ws://127.0.0.1:{ports['gw']}/raw"]),
            "websockify": (wsfy, ["--url", f"ws://127.0.0.1:{ports['wsfy']}/"]),
            "twisted_tcp_proxy": (proxy, ["--tcp", f"127.0.0.1:{ports['floor']}"]),
            "tunnelgw_tls": (gateway, ["--url", f"wss://127.0.0.1:{ports['gw_tls']}/raw"]),
            "websockify_tls": (wsfy_tls, ["--url", f"wss://127.0.0.1:{ports['wsfy_tls']}/"]),
            "twisted_tcp_proxy_tls": (proxy_tls, ["--tcp", f"127.0.0.1:{ports['floor_tls']}", "--tls", "1"]),
            "tunnelgw_2_workers": (two, ["--url", f"ws://127.0.0.1:{ports['workers']}/raw"]),
            "tunnelgw_1_worker": (one, ["--url", f"ws://127.0.0.1:{ports['one']}/raw"]),
            "tunnelgw_tls_public_writes": (public, ["--url", f"wss://127.0.0.1:{ports['public_tls']}/raw"]),
        }
        for round_number in range(options.rounds):
            for key_ in LOADS:
                names = [n for n in targets if not (key_.startswith("handshakes") and "proxy" in n)]
                if key_.endswith("resumed"):
                    names = [n for n in names if n.endswith("_tls")]
                if key_ not in ("bulk_8", "small_1k", "handshakes_100"):
                    names = [n for n in names if not n.endswith(("_workers", "_worker"))]
                if key_ not in ("bulk_1", "small_1k", "rtt_32"):
                    names = [n for n in names if n != "tunnelgw_tls_public_writes"]
                for name in names if round_number % 2 == 0 else names[::-1]:
                    proc, target = targets[name]
                    result = measure(proc, key_, target, options.seconds)
                    runs.setdefault(name, {}).setdefault(key_, []).append(result)
            print(f"round {round_number + 1} done", file=sys.stderr, flush=True)
        idle = {}
        for name, scheme in (("tunnelgw", "ws"), ("tunnelgw_tls", "wss")):
            port, tls_port = free_port(), free_port()
            fresh_config = work / f"idle_{scheme}.toml"
            fresh_config.write_text(gateway_config(port, tls_port, echo, cert, key))
            fresh = procs.start(
                [*twistd, "tunnelgw", "--config", str(fresh_config)], port, GATEWAY_CPUS, cwd=work
            )
            url = f"{scheme}://127.0.0.1:{tls_port if scheme == 'wss' else port}/raw"
            idle[name] = idle_tunnels(url, options.idle, [fresh])
            fresh.terminate()
    finally:
        procs.stop()
    medians = {
        name: {
            key_: {
                k: statistics.median(r[k] for r in rs)
                for k, v in rs[0].items()
                if isinstance(v, (int, float))
            }
            for key_, rs in measured.items()
        }
        for name, measured in runs.items()
    }
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "users.json").write_text(json.dumps({"medians": medians, "runs": runs, "idle": idle}, indent=1))
    text = (
        f"Produced by `make bench` (`bench/users.py --seconds {options.seconds:g} --rounds {options.rounds}`)"
        f" on {datetime.date.today().isoformat()}: medians of {options.rounds} rounds of"
        f" {options.seconds:g} s; idle tunnels: {options.idle:,} on a fresh gateway each.\n\n"
        + table(medians)
        + "\n\n"
        + target_table(medians, idle)
    )
    print(text)
    if options.write_docs:
        write_section("bench:users", text)
    return 0


def target_table(m: dict[str, dict[str, dict[str, float]]], idle: dict[str, dict[str, Any]]) -> str:
    """Each target the project set itself, and where this run stands."""

    def get(name: str, key: str, field: str) -> float:
        return m.get(name, {}).get(key, {}).get(field, float("nan"))

    def ratio(a: str, b: str, key: str, field: str) -> str:
        return f"{get(a, key, field) / get(b, key, field):.2f}×"

    tls_writes = [
        f"{get('tunnelgw_tls_public_writes', k, f) / get('tunnelgw_tls', k, f) - 1:+.0%}"
        for k, f in (
            ("bulk_1", "cpu_ms_per_mb"),
            ("rtt_32", "cpu_us_per_rtt"),
            ("small_1k", "cpu_us_per_msg"),
        )
    ]
    rows = [
        (
            "gateway CPU per message, pipelined, 32 B",
            "websockify",
            "≤ 0.8×",
            f"{ratio('tunnelgw', 'websockify', 'small_32', 'cpu_us_per_msg')};"
            f" TLS {ratio('tunnelgw_tls', 'websockify_tls', 'small_32', 'cpu_us_per_msg')}",
        ),
        (
            "gateway CPU per message, pipelined, 1 KiB",
            "websockify",
            "≤ 0.8×",
            f"{ratio('tunnelgw', 'websockify', 'small_1k', 'cpu_us_per_msg')};"
            f" TLS {ratio('tunnelgw_tls', 'websockify_tls', 'small_1k', 'cpu_us_per_msg')}",
        ),
        (
            "gateway CPU per round trip, 32 B",
            "websockify",
            "≤ 0.8×",
            f"{ratio('tunnelgw', 'websockify', 'rtt_32', 'cpu_us_per_rtt')};"
            f" TLS {ratio('tunnelgw_tls', 'websockify_tls', 'rtt_32', 'cpu_us_per_rtt')};"
            f" the floor {ratio('twisted_tcp_proxy', 'websockify', 'rtt_32', 'cpu_us_per_rtt')}",
        ),
        (
            "gateway CPU per MB, bulk, 1 / 8 connections",
            "Twisted TCP proxy",
            "≤ 1.1×",
            f"{ratio('tunnelgw', 'twisted_tcp_proxy', 'bulk_1', 'cpu_ms_per_mb')} /"
            f" {ratio('tunnelgw', 'twisted_tcp_proxy', 'bulk_8', 'cpu_ms_per_mb')}; TLS"
            f" {ratio('tunnelgw_tls', 'twisted_tcp_proxy_tls', 'bulk_1', 'cpu_ms_per_mb')} /"
            f" {ratio('tunnelgw_tls', 'twisted_tcp_proxy_tls', 'bulk_8', 'cpu_ms_per_mb')}",
        ),
        (
            "throughput over TLS, 1 / 8 connections",
            "websockify over TLS",
            "≥ 2×",
            f"{ratio('tunnelgw_tls', 'websockify_tls', 'bulk_1', 'mib_per_s')} /"
            f" {ratio('tunnelgw_tls', 'websockify_tls', 'bulk_8', 'mib_per_s')}",
        ),
        (
            "full TLS handshakes, 100 at once",
            "websockify over TLS",
            "≥ 10×",
            f"{ratio('tunnelgw_tls', 'websockify_tls', 'handshakes_100', 'per_s')},"
            f" p99 {get('tunnelgw_tls', 'handshakes_100', 'p99_ms'):.0f} ms",
        ),
        (
            "idle TLS tunnel",
            "",
            "≤ 24 KiB",
            f"{idle['tunnelgw_tls']['kib_per_tunnel']:.1f} KiB (plain: {idle['tunnelgw']['kib_per_tunnel']:.1f} KiB)",
        ),
        (
            "handshakes, 100 at once",
            "websockify",
            "≥ 16×, p99 < 150 ms",
            f"{ratio('tunnelgw', 'websockify', 'handshakes_100', 'per_s')},"
            f" p99 {get('tunnelgw', 'handshakes_100', 'p99_ms'):.0f} ms",
        ),
        (
            "2 workers' CPU per MB (8 connections) / per handshake",
            "1 worker",
            "≤ 1.1×",
            f"{ratio('tunnelgw_2_workers', 'tunnelgw_1_worker', 'bulk_8', 'cpu_ms_per_mb')} /"
            f" {ratio('tunnelgw_2_workers', 'tunnelgw_1_worker', 'handshakes_100', 'cpu_us_per_handshake')}",
        ),
        (
            "8-connection throughput, 2 workers",
            "websockify",
            "≥ 2.5×",
            f"{ratio('tunnelgw_2_workers', 'websockify', 'bulk_8', 'mib_per_s')}"
            f" (1 worker {ratio('tunnelgw_1_worker', 'websockify', 'bulk_8', 'mib_per_s')})",
        ),
        (
            "`tls_writes` off: CPU per MB / per round trip / per 1 KiB message",
            "shortcut on",
            "≥ +3%",
            " / ".join(tls_writes),
        ),
    ]
    lines = ["| measure | tunnelgw against | target | this run |", "| --- | --- | ---: | ---: |"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines) + "\n"


def table(m: dict[str, dict[str, dict[str, float]]]) -> str:
    def cell(name: str, key: str, field: str, fmt: str) -> str:
        value = m.get(name, {}).get(key, {}).get(field)
        return "—" if value is None else format(value, fmt)

    lines = [
        "| target | bulk 1 conn MB/s | CPU ms/MB | bulk 8 conns MB/s | CPU ms/MB"
        " | 32 B msgs/s | CPU µs/msg | 1 KiB msgs/s | CPU µs/msg | round trip p50 µs | CPU µs/rtt"
        " | handshakes/s (100) | p99 ms | CPU µs/handshake | resumed/s | p99 ms |",
        "| --- |" + " ---: |" * 16,
    ]
    for name in m:
        mb = 1.048576  # MiB/s to MB/s
        bulk1 = m[name].get("bulk_1", {}).get("mib_per_s")
        bulk8 = m[name].get("bulk_8", {}).get("mib_per_s")
        lines.append(
            f"| {name} | {'—' if bulk1 is None else format(bulk1 * mb, ',.0f')}"
            f" | {cell(name, 'bulk_1', 'cpu_ms_per_mb', '.2f')}"
            f" | {'—' if bulk8 is None else format(bulk8 * mb, ',.0f')} | {cell(name, 'bulk_8', 'cpu_ms_per_mb', '.2f')}"
            f" | {cell(name, 'small_32', 'msgs_per_s', ',.0f')} | {cell(name, 'small_32', 'cpu_us_per_msg', '.1f')}"
            f" | {cell(name, 'small_1k', 'msgs_per_s', ',.0f')} | {cell(name, 'small_1k', 'cpu_us_per_msg', '.1f')}"
            f" | {cell(name, 'rtt_32', 'p50_us', ',.0f')} | {cell(name, 'rtt_32', 'cpu_us_per_rtt', ',.0f')}"
            f" | {cell(name, 'handshakes_100', 'per_s', ',.0f')} | {cell(name, 'handshakes_100', 'p99_ms', ',.0f')}"
            f" | {cell(name, 'handshakes_100', 'cpu_us_per_handshake', ',.0f')}"
            f" | {cell(name, 'handshakes_100_resumed', 'per_s', ',.0f')}"
            f" | {cell(name, 'handshakes_100_resumed', 'p99_ms', ',.0f')} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
