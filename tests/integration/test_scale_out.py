"""
The scale-out topology: a real HAProxy in front of 3 gateway instances,
one real Redis.  1,000 tunnels of one user spread over the instances by
HAProxy; a revocation posted to one instance's admin API ends all of them,
on every instance, within 2 s (p99), the latencies written to
bench/results/revocation.json; killing an instance: HAProxy sends new
connections to the others.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import statistics
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from tests.integration.haproxy import HAProxy
from tests.integration.harness import (
    REPO,
    EchoServer,
    Gateway,
    free_port,
    handshake_status,
    wait_for,
    ws_connect,
)
from tests.integration.redis_server import Redis

PEERS = REPO / "tests" / "peers"
FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
USERS = {"alice": "alice-pw-1", "dave": "dave-pw-2", "root": "root-pw-3"}
TUNNELS = 1000


def basic(user: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{USERS[user]}".encode()).decode()


def config(port: int, admin_port: int, users: Path, redis: Redis, instance: str, echo_port: int) -> str:
    return f"""
[gateway]
listen = ["tcp:{port}:interface=127.0.0.1"]
max_tunnels_per_user = {TUNNELS * 2}
max_connections_per_address = {TUNNELS * 2}
handshake_rate_per_address = 100000
handshake_burst_per_address = 100000

# one user opening 1,000 tunnels from one address (HAProxy's), 50 at once:
# logins are counted before they run, as guesses would be
[gateway.logins]
max_pending = 1024
max_failures_per_user = 100000
max_failures_per_address = 100000

[realms.staff]
[[realms.staff.modules]]
module = "password_file"
flag = "required"
options = {{ path = "{users}", threads = 4 }}

[services.echo]
path = "/echo"
adapter = "raw"
upstream = "tcp:127.0.0.1:{echo_port}"
realm = "staff"
subprotocols = ["echo"]
allow_missing_origin = true
limits = {{ max_tunnels_per_user = {TUNNELS * 2} }}

[services.capped]
path = "/capped"
adapter = "raw"
upstream = "tcp:127.0.0.1:{echo_port}"
realm = "staff"
subprotocols = ["echo"]
allow_missing_origin = true
limits = {{ max_tunnels_per_user = 3 }}

{redis.cluster_table(instance=f'"{instance}"', lease_ttl="6", grace="2")}

[admin]
listen = "tcp:{admin_port}:interface=127.0.0.1"
realm = "staff"
"""


class Topology:
    def __init__(
        self, redis: Redis, gateways: list[Gateway], admin_ports: list[int], haproxy: HAProxy
    ) -> None:
        self.redis = redis
        self.gateways = gateways
        self.admin_ports = admin_ports
        self.haproxy = haproxy


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    work = tmp_path_factory.mktemp("scale")
    redis = Redis(work / "redis")
    users = work / "users"
    users.write_text(
        f"alice:{FAST.hash(USERS['alice'])}\ndave:{FAST.hash(USERS['dave'])}\nroot:{FAST.hash(USERS['root'])}:admin\n"
    )
    gateways: list[Gateway] = []
    admin_ports: list[int] = []
    haproxy: HAProxy | None = None
    echo = EchoServer()
    try:
        redis.start()
        for name in ("a", "b", "c"):
            port, admin_port = free_port(), free_port()
            directory = work / name
            directory.mkdir()
            text = config(port, admin_port, users, redis, name, echo.port)
            gateways.append(Gateway(directory, text, port).start())
            admin_ports.append(admin_port)
        for gateway in gateways:
            gateway.wait_event(event="cluster", state="up")
        haproxy = HAProxy(work / "haproxy", [g.port for g in gateways]).start()
        yield Topology(redis, gateways, admin_ports, haproxy)
    finally:
        if haproxy is not None:
            haproxy.stop()
        for gateway in gateways:
            gateway.stop()
        redis.stop()
        echo.close()


def revoke(t: Topology, user: str) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{t.admin_ports[0]}/api/revocations",
        method="POST",
        data=json.dumps({"kind": "user", "value": user, "seconds": 60}).encode(),
        headers={"Authorization": basic("root"), "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201


def test_revoking_a_user_ends_1000_tunnels_on_3_instances_within_2s(topology: Topology) -> None:
    node = shutil.which("node")
    if node is None or not (PEERS / "node_modules" / "ws").exists():
        raise RuntimeError("node or ws missing: run tests/peers/install.sh (make test does)")
    cfg = {
        "url": f"ws://127.0.0.1:{topology.haproxy.port}/echo",
        "count": TUNNELS,
        "protocol": "echo",
        "headers": {"Authorization": basic("alice")},
        "concurrency": 50,
        "timeoutMs": 60000,
    }
    client = subprocess.Popen(
        [node, str(PEERS / "many_tunnels.mjs"), json.dumps(cfg)], stdout=subprocess.PIPE, cwd=PEERS, text=True
    )
    try:
        assert client.stdout is not None
        ready = json.loads(client.stdout.readline())
        assert ready == {"event": "ready", "open": TUNNELS}, ready
        # spread over the three instances by HAProxy
        counts = [
            sum(1 for e in g.events() if e.get("event") == "admission" and e.get("decision") == "accept")
            for g in topology.gateways
        ]
        assert sum(counts) == TUNNELS and min(counts) > TUNNELS // 4, counts
        sent = time.time() * 1000
        revoke(topology, "alice")
        closed = json.loads(client.stdout.readline())
        client.wait(30)
    finally:
        client.kill()
    codes = Counter(code for code, _ in closed["closes"])
    assert codes == {1008: TUNNELS}, codes
    latencies = sorted(at - sent for _, at in closed["closes"])
    p50 = statistics.median(latencies)
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    results = REPO / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "revocation.json").write_text(
        json.dumps(
            {
                "tunnels": TUNNELS,
                "instances": 3,
                "per_instance": counts,
                "p50_ms": p50,
                "p99_ms": p99,
                "max_ms": latencies[-1],
            }
        )
        + "\n"
    )
    print(f"revocation of {TUNNELS} tunnels on 3 instances: p50 {p50:.0f} ms, p99 {p99:.0f} ms")
    assert p99 < 2000


def test_a_tunnel_cap_holds_wherever_haproxy_sends_the_user(topology: Topology) -> None:
    url = f"ws://127.0.0.1:{topology.haproxy.port}/capped"
    header = [f"Authorization: {basic('dave')}"]
    held = [ws_connect(url, subprotocols=["echo"], header=header) for _ in range(3)]  # one on each instance
    for ws in held:
        ws.send_binary(b"x")
        assert ws.recv() == b"x"
    statuses = [
        handshake_status(url, subprotocols=["echo"], headers={"Authorization": basic("dave")})[0]
        for _ in range(6)
    ]
    assert statuses == [429] * 6, statuses  # N+1 refused, wherever it lands
    for ws in held:
        ws.close()


def test_redis_stopped_then_back(topology: Topology) -> None:
    url = f"ws://127.0.0.1:{topology.haproxy.port}/echo"
    root = {"Authorization": basic("root")}
    held = ws_connect(url, subprotocols=["echo"], header=[f"Authorization: {basic('root')}"])
    topology.redis.stop()
    for gateway in topology.gateways:
        gateway.wait_event(event="cluster", state="down")
    # after the grace period, every instance refuses new admissions; open tunnels go on
    wait_for(
        lambda: (
            [handshake_status(url, subprotocols=["echo"], headers=root)[0] for _ in range(3)] == [503] * 3
        ),
        10,
        "admissions refused on every instance",
    )
    held.send_binary(b"during")
    assert held.recv() == b"during"
    # back on Redis: admitted again on every instance
    topology.redis.start()
    wait_for(
        lambda: (
            [handshake_status(url, subprotocols=["echo"], headers=root)[0] for _ in range(3)] == [101] * 3
        ),
        30,
        "admissions on every instance once Redis is back",
    )
    held.close()


def test_killing_an_instance_haproxy_sends_new_connections_to_the_others(topology: Topology) -> None:
    capped = f"ws://127.0.0.1:{topology.haproxy.port}/capped"
    dave = {"Authorization": basic("dave")}
    # dave's three places, one of them on the instance about to die
    wait_for(
        lambda: handshake_status(capped, subprotocols=["echo"], headers=dave)[0] == 101,
        10,
        "dave's places back",
    )
    held = [
        ws_connect(capped, subprotocols=["echo"], header=[f"Authorization: {basic('dave')}"])
        for _ in range(3)
    ]
    url = f"ws://127.0.0.1:{topology.haproxy.port}/echo"
    headers = {"Authorization": basic("root")}
    dead = topology.gateways[2]
    assert dead.proc is not None
    os.kill(dead.proc.pid, 9)
    dead.proc.wait(10)
    killed = time.monotonic()
    statuses = [handshake_status(url, subprotocols=["echo"], headers=headers)[0] for _ in range(12)]
    assert statuses == [101] * 12, statuses
    # and the health check took it out
    wait_for(lambda: "gw2 is DOWN" in topology.haproxy.log(), 10, "HAProxy to mark the dead instance down")
    # the dead instance's lease ends within its TTL (6 s): dave has a place again
    wait_for(
        lambda: handshake_status(capped, subprotocols=["echo"], headers=dave)[0] == 101,
        15,
        "the lease to end",
    )
    assert time.monotonic() - killed < 6 + 3
    del held
