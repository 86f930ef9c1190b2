"""
What the shared engine costs a handshake: two gateways side by side in one
run, the same service and login (a JWT of one user, so that the user's
tunnel caps are counted), one counting in its memory, the other in Redis
(leases, revocation checks, the heartbeat).  Handshakes of 16 at once in
slices of a second, in turn, the order reversed every other slice; the
gateway's CPU per handshake (as bench/run.py measures it).

    .venv/bin/python bench/cluster_cost.py [--seconds 12]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import jwt

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import BIN, GATEWAY_CPUS, Processes, free_port, handshake_slices  # noqa: E402

SECRET = "bench-secret-bench-secret-bench-secret"


def config(port: int, secret_file: Path, redis_port: int | None) -> str:
    cluster = f'[cluster]\nredis = "redis://127.0.0.1:{redis_port}/0"\n' if redis_port else ""
    return f"""
[gateway]
listen = ["tcp:{port}:interface=127.0.0.1:backlog=4096"]
max_connections = 20000
max_connections_per_address = 20000
max_tunnels_per_user = 100000
handshake_rate_per_address = 1000000
handshake_burst_per_address = 1000000

[realms.tokens]
challenge = "Bearer"
[[realms.tokens.modules]]
module = "jwt"
flag = "required"
options = {{ key_file = "{secret_file}", algorithms = ["HS256"], audience = "bench" }}

[services.echo]
path = "/echo"
adapter = "echo"
realm = "tokens"
allow_no_subprotocol = true
allow_missing_origin = true
limits = {{ max_tunnels_per_user = 100000 }}

{cluster}
"""


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=12)
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tunnelgw-cluster-bench-"))
    secret = work / "secret"
    secret.write_text(SECRET)
    token = jwt.encode(
        {"sub": "bench", "aud": "bench", "exp": int(time.time()) + 86400}, SECRET, algorithm="HS256"
    )
    procs = Processes()
    try:
        redis_port = free_port()
        procs.start(
            [
                "redis-server",
                "--port",
                str(redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            redis_port,
            None,
        )
        servers, urls = {}, {}
        for name, shared in (("in memory", None), ("Redis", redis_port)):
            port = free_port()
            path = work / f"{name[:5]}.toml"
            path.write_text(config(port, secret, shared))
            args = [str(BIN / "twistd"), "-n", "--pidfile=", "--logger", "tunnelgw.logs.json_observer"]
            servers[name] = procs.start(
                [*args, "tunnelgw", "--config", str(path)],
                port,
                GATEWAY_CPUS,
                cwd=work,
                env=os.environ.copy(),
            )
            urls[name] = ["--url", f"ws://127.0.0.1:{port}/echo"]
        time.sleep(2)  # the Redis-backed one reads the revocations in force before it admits anyone
        load = (
            "--mode",
            "handshakes",
            "--conns",
            "16",
            "--protocol",
            "none",
            "--authorization",
            f"Bearer {token}",
        )
        names = list(servers)
        results = handshake_slices(servers, urls, names, load, options.seconds)
    finally:
        procs.stop()
    base = results["in memory"]["cpu_us_per_handshake"]
    print("| counts kept | handshakes/s | gateway CPU µs/handshake | against in memory |")
    print("| --- | ---: | ---: | ---: |")
    for name in names:
        r = results[name]
        print(
            f"| {name} | {r['per_s']:,.0f} | {r['cpu_us_per_handshake']:,.0f} | {r['cpu_us_per_handshake'] / base:.2f}× |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
