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
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from tunnelgw.testing import public_realm

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BIN = Path(sys.executable).parent


# With two or more cores, the gateway under test (tunnelgw, or websockify
# and the children it forks) gets core 0 to itself, and the load client and
# the echo server share the others: each gateway is measured on one core,
# which is how it is deployed, and the noise of three processes scheduled
# over two cores is gone.
CORES = os.cpu_count() or 1
GATEWAY_CPUS = {0} if CORES >= 2 else None
PEER_CPUS = set(range(1, CORES)) if CORES >= 2 else None


def pinned(cpus: set[int] | None) -> Any:
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"port {port} not listening after {timeout}s")


def wait_listening(proc: subprocess.Popen[bytes], port: int, timeout: float = 20.0) -> None:
    """
    Wait until C{proc} itself listens on C{port} (several may share it).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for conn in psutil.Process(proc.pid).net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                return
        time.sleep(0.05)
    raise TimeoutError(f"process {proc.pid} not listening on {port} after {timeout}s")


class Processes:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, args: list[str], port: int, cpus: set[int] | None, **kw: Any) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=pinned(cpus), **kw
        )
        self.procs.append(proc)
        wait_port(port)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def node_json(
    script: str, args: list[str], timeout: float, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """
    Run a Node client of bench/ (on the peers' cores) to its end: the JSON
    object of its last line; an C{error} in it, or none at all, raises.
    """
    out = subprocess.run(
        ["node", str(HERE / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=HERE,
        env=env,
        preexec_fn=pinned(PEER_CPUS),
    )
    lines = out.stdout.strip().splitlines()
    result: dict[str, Any] = json.loads(lines[-1]) if lines else {"error": out.stderr}
    if "error" in result:
        raise RuntimeError(f"{script} {' '.join(args)}: {result['error']}")
    return result


def load(*args: str, timeout: float = 120) -> dict[str, Any]:
    out = subprocess.run(
        ["node", str(HERE / "load.js"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=HERE,
        preexec_fn=pinned(PEER_CPUS),
    )
    line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "{}"
    result: dict[str, Any] = json.loads(line)
    if "error" in result or out.returncode != 0:
        raise RuntimeError(f"load {' '.join(args)} failed: {out.stdout} {out.stderr}")
    return result


def cpu_seconds(proc: subprocess.Popen[bytes]) -> float:
    """
    CPU time of a process and of the children it has reaped (websockify's
    per-connection forks) or still runs.
    """
    p = psutil.Process(proc.pid)
    times = p.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in p.children(recursive=True):
        try:
            t = child.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return float(total)


def handshakes(proc: subprocess.Popen[bytes], *args: str) -> dict[str, Any]:
    """
    The handshake load, with the CPU the server under test spent per
    handshake: steadier than the rate on a busy or throttled machine.
    """
    settled(proc)  # the forks of an earlier measure are not this one's
    before = cpu_seconds(proc)
    result = load(*args)
    settled(proc)  # this measure's forks have exited and been counted
    if result["failures"]:
        raise RuntimeError(f"{result['failures']} handshakes failed, the first: {result['first_error']}")
    result["cpu_us_per_handshake"] = (cpu_seconds(proc) - before) / max(1, result["count"]) * 1e6
    return result


def handshake_slices(
    servers: dict[str, subprocess.Popen[bytes]],
    urls: dict[str, list[str]],
    names: list[str],
    args: tuple[str, ...],
    seconds: float,
) -> dict[str, dict[str, Any]]:
    """
    The handshake load C{args} on each of C{names} for C{seconds} in all,
    in slices of about a second: every target's first slice, then every
    target's second in the opposite order, and so on.  Each target's result
    adds up its slices (handshakes, time, CPU).
    """
    count = max(1, round(seconds))
    each = ("--seconds", f"{seconds / count:g}")
    slices: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for i in range(count):
        for name in names if i % 2 == 0 else names[::-1]:
            slices[name].append(handshakes(servers[name], *args, *each, *urls[name]))
    return {name: summed(parts) for name, parts in slices.items()}


def summed(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """
    Handshake results of consecutive slices as one: rates and CPU per
    handshake over all the handshakes of all of them.
    """
    count = sum(p["count"] for p in parts)
    elapsed = sum(p["seconds"] for p in parts)
    total = dict(parts[0])
    total.update(
        count=count,
        seconds=elapsed,
        per_s=count / elapsed,
        failures=sum(p["failures"] for p in parts),
        cpu_us_per_handshake=sum(p["cpu_us_per_handshake"] * p["count"] for p in parts) / max(1, count),
        client_cpu_us_per_handshake=sum(p["client_cpu_us_per_handshake"] * p["count"] for p in parts)
        / max(1, count),
        slices=len(parts),
    )
    return total


def settled(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """
    Wait (a bounded while) until C{proc} has no child processes left.
    """
    deadline = time.monotonic() + timeout
    while psutil.Process(proc.pid).children() and time.monotonic() < deadline:
        time.sleep(0.05)


def rss(proc: subprocess.Popen[bytes]) -> int:
    """
    Resident memory of a process and its children (twistd may fork none;
    websockify forks one per connection).
    """
    p = psutil.Process(proc.pid)
    return int(p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True)))


def idle_tunnels(url: str, count: int, gateways: list[subprocess.Popen[bytes]]) -> dict[str, Any]:
    time.sleep(1)
    before = sum(rss(gateway) for gateway in gateways)
    client = subprocess.Popen(
        [
            "node",
            str(HERE / "load.js"),
            "--mode",
            "idle",
            "--url",
            url,
            "--conns",
            str(count),
            "--protocol",
            "none",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=HERE,
        preexec_fn=pinned(PEER_CPUS),
    )
    assert client.stdout is not None and client.stdin is not None
    first = json.loads(client.stdout.readline())
    time.sleep(2)  # let the gateway settle
    after = sum(rss(gateway) for gateway in gateways)
    client.stdin.close()
    end = json.loads(client.stdout.readline())
    client.wait(30)
    return {
        "requested": count,
        "processes": len(gateways),
        "held": first["held"],
        "failures": first["failures"],
        "still_held_at_end": end["still_held"],
        "open_seconds": first["seconds"],
        "rss_before_mib": before / 2**20,
        "rss_after_mib": after / 2**20,
        "kib_per_tunnel": (after - before) / 1024 / max(1, first["held"]),
    }


def start_gateway(
    procs: Processes,
    port: int,
    echo_port: int,
    rfb_port: int = 9,
    listener: str = "tcp",
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """
    tunnelgw under twistd, logging JSON events as docs/operations.md
    recommends for production (to /dev/null here).  C{listener="reuseport"}
    lets several of them share C{port}.
    """
    workdir = Path(tempfile.mkdtemp(prefix="tunnelgw-bench-"))
    config = workdir / "bench.toml"
    config.write_text(
        f"""
[gateway]
listen = ["{listener}:{port}:interface=127.0.0.1:backlog=4096"]
max_connections = 20000
max_connections_per_address = 20000
# every client of the bench has the same address; the check still runs
handshake_rate_per_address = 1000000
handshake_burst_per_address = 1000000

{public_realm()}

[services.raw]
path = "/raw"
adapter = "raw"
realm = "public"
upstream = "tcp:127.0.0.1:{echo_port}"
subprotocols = ["binary"]
allow_no_subprotocol = true
allow_missing_origin = true

[services.echo]
path = "/echo"
adapter = "echo"
realm = "public"
allow_no_subprotocol = true
allow_missing_origin = true

[policies.desktop]
[[policies.desktop.rules]]
roles = ["*"]
actions = ["input"]
resources = ["*"]

[services.rfb]
path = "/rfb"
adapter = "rfb"
realm = "public"
policy = "desktop"
upstream = "tcp:127.0.0.1:{rfb_port}"
subprotocols = ["binary"]
allow_missing_origin = true
[services.rfb.rfb]
security_types = ["none"]

[services.raw-rfb]
path = "/raw-rfb"
adapter = "raw"
realm = "public"
upstream = "tcp:127.0.0.1:{rfb_port}"
subprotocols = ["binary"]
allow_missing_origin = true
"""
    )
    args = [str(BIN / "twistd"), "-n", "--pidfile=", "--logger", "tunnelgw.logs.json_observer"]
    return procs.start(
        [*args, "tunnelgw", "--config", str(config)],
        port,
        GATEWAY_CPUS,
        cwd=workdir,
        env=None if env is None else {**os.environ, **env},
    )


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


def paired(results: dict[str, Any], a: str, b: str, key: str, field: str) -> float:
    """
    The median, over rounds, of C{a}'s C{field} over C{b}'s in the same
    round (measured next to each other).
    """
    return float(statistics.median(per_round(results, a, b, key, field)))


def ratios(results: dict[str, Any]) -> dict[str, float]:
    def hs(a: str, b: str) -> float:
        return paired(results, a, b, "handshakes", "per_s")

    return {
        "throughput_1_vs_websockify": paired(results, "tunnelgw", "websockify", "throughput_1", "mib_per_s"),
        "throughput_8_vs_websockify": paired(results, "tunnelgw", "websockify", "throughput_8", "mib_per_s"),
        "rtt_p50_vs_websockify": paired(results, "tunnelgw", "websockify", "rtt_32", "p50_us"),
        "handshakes_vs_websockify": hs("tunnelgw", "websockify"),
        "floor_autobahn_vs_websockify": hs("floor_autobahn", "websockify"),
        "floor_twisted_vs_websockify": hs("floor_twisted", "websockify"),
        "handshakes_vs_floor_autobahn": hs("tunnelgw", "floor_autobahn"),
        "rfb_vs_raw": results["rfb_stream"]["tunnelgw_rfb"]["mib_per_s"]
        / results["rfb_stream"]["tunnelgw_raw"]["mib_per_s"],
        "rfb_vs_websockify": results["rfb_stream"]["tunnelgw_rfb"]["mib_per_s"]
        / results["rfb_stream"]["websockify"]["mib_per_s"],
    }


def per_round(results: dict[str, Any], a: str, b: str, key: str, field: str) -> list[float]:
    """
    C{a}'s C{field} over C{b}'s, round by round (what L{paired} takes the
    median of).
    """
    rounds = zip(results[a][key]["rounds"], results[b][key]["rounds"], strict=True)
    return [x[field] / y[field] for x, y in rounds]


def markdown(results: dict[str, Any], meta: dict[str, Any]) -> str:
    hs_rounds = ", ".join(
        f"{r:.2f}×" for r in sorted(per_round(results, "tunnelgw", "websockify", "handshakes", "per_s"))
    )
    rows = []
    for name in ("tunnelgw", "websockify", "direct_tcp", "client_ceiling_ws_echo"):
        r = results[name]
        hs = f"{r['handshakes']['per_s']:.0f}" if "handshakes" in r else "–"
        rows.append(
            f"| {name} | {r['throughput_1']['mib_per_s']:.0f} | {r['throughput_8']['mib_per_s']:.0f} | "
            f"{r['rtt_32']['p50_us']:.0f} | {r['rtt_32']['p99_us']:.0f} | {r['rtt_32']['msgs_per_s']:.0f} | {hs} |"
        )
    q = ratios(results)
    burst_rows = "\n".join(
        f"| {name} | {b['per_s']:.0f} | {b['p50_ms']:.1f} | {b['p99_ms']:.1f} | {b['failures']:.0f} |"
        for name in ("tunnelgw", "websockify")
        for b in (results[name]["handshakes_burst"],)
    )

    def cpu(name: str, key: str = "cpu_us_per_handshake") -> str:
        value = results[name]["handshakes"].get(key)
        return f"{value:.0f} µs" if value is not None else "–"

    def client(name: str) -> str:
        return cpu(name, "client_cpu_us_per_handshake")

    e, w, w2 = results["idle_echo_10000"], results["idle_raw_9900"], results["idle_raw_10000_2p"]
    rfb = results["rfb_stream"]
    rfb_rows = "\n".join(
        f"| {label} | {rfb[name]['mib_per_s']:.0f} |"
        for name, label in (
            ("tunnelgw_rfb", "tunnelgw, `rfb` adapter"),
            ("tunnelgw_raw", "tunnelgw, `raw` adapter"),
            ("websockify", "websockify"),
            ("direct_tcp", "direct TCP"),
        )
    )
    return f"""# Benchmarks

Latest figures, produced by:

```sh
{meta["command"]}
```

on {meta["date"]}, {meta["machine"]}. Each figure is the median of
{meta["repeat"]} rounds of {meta["seconds"]:g} s (after a 1 s warm-up). In each
round, measure by measure, every target is measured in turn, back to back,
in the opposite order every other round: this machine's speed drifts by
more than a tenth over tens of seconds, and targets measured next to each
other see the same speed. Handshakes are measured in slices of a second,
every target in turn, then again in the opposite order, {meta["seconds"]:g}
times in a round (a disturbance of a few seconds, which this machine has,
then falls on every target). Each ratio is the median, over the rounds, of
the ratio within a round. The
backend is the same for all (a Node TCP echo server, `bench/servers.js`), and
so is the load client (Node `ws` {meta["ws"]} with bufferutil, `bench/load.js`).
{meta["pinning"]} tunnelgw logs every event as JSON
(`--logger tunnelgw.logs.json_observer`, as docs/operations.md recommends in
production; to /dev/null here, as websockify's log is), with its abuse
limits at their defaults (login throttle, tunnels per user, message
rate), but for the handshakes per address, raised so that the bench's one
address is never refused while the check still runs. Throughput counts
echoed payload bytes (each byte also crossed the gateway the other way).
Handshakes are counted with 16 clients at once, each opening a WebSocket
(the gateway connects the backend before its 101), closing it with 1000
and starting over (with 4, a bare Twisted accept-connect-respond loop is
idle part of the time; 32, 64 or 256 do not raise any gateway's rate
further, though a gateway's core stays idle for 6–15% of the time, the
gateway and the load client handing each other batches across the two
cores, where websockify's forks keep its core busy). For handshakes the
load client speaks WebSocket on a bare socket (`handshakeOnce` in
`bench/load.js`: a fresh key, the 101 checked as a browser checks it, a
masked close frame, the server's close frame, the server's FIN): Node
`ws` goes through node:http, and at about 900 µs of CPU per handshake it,
not the gateway, set the rate. The load client's ceiling is its
result against a Node `ws` echo server on the gateway's core: it is faster
than every gateway measured, so it is not what limits them; the client's
own CPU per handshake is in the floors' table below.

| target | MiB/s, 64 KiB msgs, 1 conn | MiB/s, 64 KiB msgs, 8 conns | RTT p50 µs (32 B) | RTT p99 µs | msgs/s (1 conn, ping-pong) | handshakes/s (16 concurrent) |
| --- | ---: | ---: | ---: | ---: | ---: | ---: |
{chr(10).join(rows)}

Single figures vary by about ±20% from one run to the next on this shared
two-core machine (a gateway's CPU per handshake by as much from one minute
to the next), and its speed has differed twofold from one day to
another (direct TCP 1,458 MiB/s on one day, 719 on another); compare the
ratios within one run, and raise `--repeat` for more confidence.

Ratios, tunnelgw vs websockify (same rounds):

| measure | ratio | target |
| --- | ---: | --- |
| throughput, 1 connection | {q["throughput_1_vs_websockify"]:.2f}× | ≥ 1.5× (aim 2×) |
| throughput, 8 connections | {q["throughput_8_vs_websockify"]:.2f}× | ≥ 1.5× (aim 2×) |
| round-trip p50 | {q["rtt_p50_vs_websockify"]:.2f}× | ≤ 1.1× |
| handshakes/s | {q["handshakes_vs_websockify"]:.2f}× (rounds: {hs_rounds}) | ≥ 10× |

A burst: 128 clients opening WebSockets at once, over and over (Twisted's
default accept queue of 50 overflowed at a hundred: the kernel dropped
SYNs, and those clients waited a second for the retransmission; tunnelgw
listens with 1024 unless told otherwise, websockify with Python's 100):

| target | handshakes/s (128 concurrent) | p50 ms | p99 ms | failed |
| --- | ---: | ---: | ---: | ---: |
{burst_rows}

The floors under the handshake rate, same run (`bench/floor.py`, on the
gateway's core, the same backend and load): an autobahn server with
tunnelgw's protocol options that connects the backend before its 101 and
relays, with no admission, authentication, limits or logs; and a bare
Twisted server that answers a canned 101 after connecting the backend:
the TCP work of a handshake alone. Both run on Twisted's default epoll
reactor; tunnelgw runs on its own (`tunnelgw.reactor`, the same without a
logging context per I/O event).

| target | handshakes/s (16 concurrent) | vs websockify | server CPU per handshake | load client CPU per handshake |
| --- | ---: | ---: | ---: | ---: |
| autobahn alone | {results["floor_autobahn"]["handshakes"]["per_s"]:.0f} | {q["floor_autobahn_vs_websockify"]:.1f}× | {cpu("floor_autobahn")} | {client("floor_autobahn")} |
| Twisted alone | {results["floor_twisted"]["handshakes"]["per_s"]:.0f} | {q["floor_twisted_vs_websockify"]:.1f}× | {cpu("floor_twisted")} | {client("floor_twisted")} |
| tunnelgw | {results["tunnelgw"]["handshakes"]["per_s"]:.0f} | {q["handshakes_vs_websockify"]:.2f}× ({q["handshakes_vs_floor_autobahn"]:.2f}× autobahn alone) | {cpu("tunnelgw")} | {client("tunnelgw")} |
| websockify | {results["websockify"]["handshakes"]["per_s"]:.0f} | 1× | {cpu("websockify")} | {client("websockify")} |

The CPU column is the server's own CPU time (websockify's forks
included) divided by the handshakes it served: steadier than the rate
when the machine is busy or throttled, and what to compare between runs.

VNC: a framebuffer stream from an RFB server (`bench/servers.js
rfb-stream`: RFB 3.8, security None, then framebuffer bytes as fast as the
client takes them) to an RFB client (`bench/load.js --mode rfb`: noVNC's
handshake, one FramebufferUpdateRequest per MiB received), 1 connection:

| path | MiB/s |
| --- | ---: |
{rfb_rows}

The `rfb` adapter follows the handshake and parses every client message
(the view-only policy applies to them); the framebuffer bytes themselves
pass unparsed, so it runs at {q["rfb_vs_raw"]:.2f}× the `raw` adapter and
{q["rfb_vs_websockify"]:.2f}× websockify.

Idle tunnels held (resident memory growth of the gateway processes divided
by tunnels held; each idle tunnel answered one echo first):

| tunnels | processes | held | failures | still up at the end | KiB per tunnel | RSS before → after |
| --- | ---: | ---: | ---: | ---: | ---: | --- |
| `echo` (1 socket each) | 1 | {e["held"]} / {e["requested"]} | {e["failures"]} | {e["still_held_at_end"]} | {e["kib_per_tunnel"]:.1f} | {e["rss_before_mib"]:.0f} → {e["rss_after_mib"]:.0f} MiB |
| `raw` (2 sockets each) | 1 | {w["held"]} / {w["requested"]} | {w["failures"]} | {w["still_held_at_end"]} | {w["kib_per_tunnel"]:.1f} | {w["rss_before_mib"]:.0f} → {w["rss_after_mib"]:.0f} MiB |
| `raw` (2 sockets each) | 2 | {w2["held"]} / {w2["requested"]} | {w2["failures"]} | {w2["still_held_at_end"]} | {w2["kib_per_tunnel"]:.1f} | {w2["rss_before_mib"]:.0f} → {w2["rss_after_mib"]:.0f} MiB |

A raw tunnel uses two file descriptors, and this machine's hard limit of
20,000 descriptors per process cannot be raised here: one process holds
9,900 raw tunnels; 10,000 are held by two processes sharing the port
(`reuseport:` listener, as docs/operations.md describes for more tunnels
than one process has descriptors), memory summed over both. Target:
≤ 12 KiB per idle tunnel, 10,000 held with zero failures.

Masking and UTF-8 validation run in C in both the load client (bufferutil)
and tunnelgw (autobahn's NVX: `autobahn.websocket.USES_NVX` = {meta["nvx"]}).
"""


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


COMPARISONS = "\n## tunnelgw against tunnelgw\n"


def write_section(marker: str, text: str) -> None:
    """
    Replace what docs/benchmarks.md holds between C{<!-- marker -->} and
    C{<!-- /marker -->} by C{text}.
    """
    path = REPO / "docs" / "benchmarks.md"
    doc = path.read_text()
    begin, end = f"<!-- {marker} -->", f"<!-- /{marker} -->"
    if begin not in doc:
        raise SystemExit(f"docs/benchmarks.md has no {begin} ... {end} section")
    head, rest = doc.split(begin, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{begin}\n{text}{end}{tail}")


def kept_comparisons(doc: str) -> str:
    """
    The section bench/compare.py writes, kept as it is when this script
    rewrites the rest of docs/benchmarks.md.
    """
    return COMPARISONS + doc.split(COMPARISONS, 1)[1] if COMPARISONS in doc else ""


if __name__ == "__main__":
    sys.exit(main())
