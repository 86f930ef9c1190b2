"""
What every bench script shares: the processes under test (started, pinned,
waited for and stopped), free ports, the Node load client and its JSON,
a process's CPU and memory, tunnelgw started with the bench's
configuration, and the writing of docs/benchmarks.md's sections.
"""

from __future__ import annotations

import json
import os
import socket
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


def load(*args: str, timeout: float = 120, cpus: set[int] | None = PEER_CPUS) -> dict[str, Any]:
    out = subprocess.run(
        ["node", str(HERE / "load.js"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=HERE,
        preexec_fn=pinned(cpus),
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
