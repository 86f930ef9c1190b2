"""
tunnelgw against tunnelgw, side by side in one run: every variant is a
gateway of its own, measured in turn, back to back, the order reversed
every other round (as bench/run.py measures its targets).

    make compare ARGS='--ablation'        # each shortcut of tunnelgw._compat against its public fallback
    make compare ARGS='--ref REF'         # this tree against the git ref REF (a commit, a tag)

Add --write-docs to put the table in docs/benchmarks.md.  Measures: the
CPU per handshake and the handshake rate (16 concurrent, in slices of a
second), throughput (64 KiB messages, 1 connection), round-trip p50
(32 bytes); and in memory (bench/lifecycle.py, steadier) the CPU per
handshake, per message pair and the heap an idle tunnel holds.  Each
ratio is the median over rounds of the ratio within a round.
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
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import (  # noqa: E402
    BIN,
    GATEWAY_CPUS,
    REPO,
    Processes,
    free_port,
    handshake_slices,
    load,
    pinned,
    start_gateway,
    write_section,
)

from tunnelgw._compat import ENVIRONMENT, SHORTCUTS  # noqa: E402


def worktree(ref: str) -> Path:
    """A checkout of C{ref} in a temporary directory."""
    path = Path(tempfile.mkdtemp(prefix="tunnelgw-ref-")) / "tree"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), ref], check=True)
    return path


def variants(options: argparse.Namespace) -> dict[str, dict[str, str]]:
    """Each variant's name and the environment its gateway runs in."""
    if options.ablation:
        found: dict[str, dict[str, str]] = {"all shortcuts": {}}
        found.update({f"without {name}": {ENVIRONMENT: name} for name in SHORTCUTS})
        return found
    tree = worktree(options.ref)
    options.worktree = tree
    return {"this tree": {}, options.ref: {"PYTHONPATH": str(tree)}}


def in_process(env: dict[str, str]) -> dict[str, float]:
    """
    bench/lifecycle.py in a process of its own with C{env}, on the
    gateway's core: CPU per handshake and per message pair, in memory.
    """
    out = subprocess.run(
        [str(BIN / "python"), str(HERE / "lifecycle.py"), "--rounds", "3", "--tunnels", "300"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
        cwd=tempfile.gettempdir(),  # not the checkout: PYTHONPATH decides the tree
        preexec_fn=pinned(GATEWAY_CPUS),
        check=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def measure(options: argparse.Namespace) -> dict[str, Any]:
    envs = variants(options)
    names = list(envs)
    procs = Processes()
    rounds: dict[str, dict[str, list[dict[str, Any]]]] = {name: {} for name in names}
    try:
        echo_port = free_port()
        procs.start(["node", str(HERE / "servers.js"), "tcp-echo", str(echo_port)], echo_port, None)
        servers, urls = {}, {}
        for name in names:
            port = free_port()
            servers[name] = start_gateway(procs, port, echo_port, env=envs[name])
            urls[name] = ["--url", f"ws://127.0.0.1:{port}/raw"]
        seconds = str(options.seconds)
        for number in range(options.repeat):
            order = names if number % 2 == 0 else names[::-1]
            for name in order:
                rounds[name].setdefault("in_process", []).append(in_process(envs[name]))
            sliced = handshake_slices(
                servers, urls, order, ("--mode", "handshakes", "--conns", "16"), options.seconds
            )
            for name in order:
                rounds[name].setdefault("handshakes", []).append(sliced[name])
            for key, args in (
                ("throughput_1", ("--mode", "throughput", "--conns", "1")),
                ("rtt_32", ("--mode", "rtt", "--size", "32")),
            ):
                for name in order:
                    rounds[name].setdefault(key, []).append(load(*args, "--seconds", seconds, *urls[name]))
            print("round done", flush=True)
    finally:
        procs.stop()
    return {"rounds": rounds}


# (measure, field, higher is better, heading)
FIGURES = (
    ("in_process", "handshake_us", False, "in memory: CPU µs/handshake"),
    ("in_process", "message_pair_us", False, "CPU µs/message pair"),
    ("in_process", "idle_tunnel_bytes", False, "heap bytes/idle tunnel"),
    ("handshakes", "cpu_us_per_handshake", False, "load: CPU µs/handshake"),
    ("handshakes", "per_s", True, "handshakes/s"),
    ("throughput_1", "mib_per_s", True, "MiB/s (1 conn)"),
    ("rtt_32", "p50_us", False, "RTT p50 µs"),
)


def gain(results: dict[str, Any], base: str, name: str, key: str, field: str, higher: bool) -> float:
    """
    What C{base} gains over C{name} on one figure (the median over rounds
    of the ratio within a round, minus one): positive is better.
    """
    rounds = results["rounds"]
    return statistics.median(
        (b[field] / n[field] if higher else n[field] / b[field]) - 1
        for b, n in zip(rounds[base][key], rounds[name][key], strict=True)
    )


def median(results: dict[str, Any], name: str, key: str, field: str) -> float:
    return statistics.median(r[field] for r in results["rounds"][name][key])


def markdown(results: dict[str, Any], options: argparse.Namespace) -> str:
    names = list(results["rounds"])
    base = names[0]
    command = "make compare ARGS='" + ("--ablation" if options.ablation else f"--ref {options.ref}")
    command += f" --repeat {options.repeat} --write-docs'"
    lines = [
        f"Produced by `{command}` on {datetime.date.today().isoformat()}, {options.repeat} rounds of"
        f" {options.seconds:g} s, each variant a gateway (and an in-memory run) of its own on core 0.",
        "",
        "| variant | " + " | ".join(heading for *_, heading in FIGURES) + " |",
        "| --- |" + " ---: |" * len(FIGURES),
    ]
    for name in names:
        cells = [f"{median(results, name, key, field):,.1f}" for key, field, _, _ in FIGURES]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    what = "what each shortcut saves" if options.ablation else f"this tree against {names[-1]}"
    lines += [
        "",
        f"Gains, {what} (positive is better; median over rounds of the ratio within a round):",
        "",
        "| variant | " + " | ".join(heading for *_, heading in FIGURES) + " |",
        "| --- |" + " ---: |" * len(FIGURES),
    ]
    for name in names[1:]:
        cells = [
            f"{100 * gain(results, base, name, key, field, higher):+.1f}%"
            for key, field, higher, _ in FIGURES
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_docs(kind: str, text: str) -> None:
    write_section(f"compare:{kind}", text)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--ablation", action="store_true", help="each shortcut against its public fallback")
    which.add_argument("--ref", help="a git ref to measure this tree against")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--write-docs", action="store_true")
    options = parser.parse_args()
    options.worktree = None
    try:
        results = measure(options)
    finally:
        if options.worktree is not None:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(options.worktree)], check=False
            )
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    kind = "ablation" if options.ablation else "ref"
    (out / f"compare-{kind}.json").write_text(json.dumps(results, indent=2))
    text = markdown(results, options)
    print(text)
    if options.write_docs:
        write_docs(kind, text)
    return 0


if __name__ == "__main__":
    os.chdir(REPO)
    sys.exit(main())
