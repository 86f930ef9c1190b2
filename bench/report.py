"""
bench/run.py's figures as docs/benchmarks.md shows them: each ratio of
tunnelgw to websockify, direct TCP and the floors, paired round by round,
and the markdown of the page above its comparisons.
"""

from __future__ import annotations

import statistics
from typing import Any


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
