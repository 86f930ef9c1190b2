"""
Several instances, one Redis: a revocation issued on one instance ends the
user's tunnels on every instance within 2 s and refuses their admissions
everywhere; the tunnel list is cluster-wide; while Redis is unreachable,
open tunnels stay and admissions go on for the grace period, then are
refused (or, for an instance that says so, admitted on what it knows);
back on Redis, admissions resume.  Redis over TLS with a password.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

from tests.integration.certs import CA
from tests.integration.harness import (
    BIN,
    REPO,
    Gateway,
    expect_close,
    free_port,
    handshake_status,
    wait_for,
    ws_connect,
)
from tests.integration.redis_server import Redis

FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
USERS = {
    "alice": "alice-pw-1",
    "bob": "bob-pw-2",
    "carol": "carol-pw-4",
    "dave": "dave-pw-5",
    "root": "root-pw-3",
}
GRACE = 2


def write_users(path: Path) -> Path:
    """The password file of C{USERS}: root an admin."""
    path.write_text(
        "".join(f"{u}:{FAST.hash(p)}\n" for u, p in USERS.items() if u != "root")
        + f"root:{FAST.hash(USERS['root'])}:admin\n"
    )
    return path


def basic(user: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{USERS[user]}".encode()).decode()


def config(port: int, admin_port: int, users: Path, redis: Redis | None, instance: str) -> str:
    when_down = '"local"' if instance == "b" else '"refuse"'
    cluster = (
        redis.cluster_table(instance=f'"{instance}"', grace=str(GRACE), lease_ttl="3", when_down=when_down)
        if redis
        else ""
    )
    return f"""
[gateway]
listen = ["tcp:{port}:interface=127.0.0.1"]

[gateway.logins]
max_failures_per_user = 4

[realms.staff]
[[realms.staff.modules]]
module = "password_file"
flag = "required"
options = {{ path = "{users}" }}

[services.echo]
path = "/echo"
adapter = "echo"
realm = "staff"
subprotocols = ["echo"]
allow_missing_origin = true

[services.capped]
path = "/capped"
adapter = "echo"
realm = "staff"
subprotocols = ["echo"]
allow_missing_origin = true
limits = {{ max_tunnels_per_user = 2 }}

{cluster}

[admin]
listen = "tcp:{admin_port}:interface=127.0.0.1"
realm = "staff"
require_roles = ["admin"]
"""


class Setup:
    def __init__(self, redis: Redis | None, gateways: list[Gateway], admin_ports: list[int]) -> None:
        self.redis = redis
        self.gateways = gateways
        self.admin_ports = admin_ports

    def api(self, i: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.admin_ports[i]}{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": basic("root"), "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def open(self, i: int, user: str, path: str = "/echo") -> Any:
        ws = ws_connect(
            self.gateways[i].url(path), subprotocols=["echo"], header=[f"Authorization: {basic(user)}"]
        )
        ws.send_binary(b"hi")
        assert ws.recv() == b"hi"
        return ws

    def status(self, i: int, user: str, path: str = "/echo") -> int:
        url = self.gateways[i].url(path)
        return handshake_status(url, subprotocols=["echo"], headers={"Authorization": basic(user)})[0]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    work = tmp_path_factory.mktemp("cluster")
    ca = CA(work)
    cert, key = ca.issue("redis", ["127.0.0.1"])
    redis = Redis(work / "redis", tls=(cert, key, ca.cert_path))
    users = write_users(work / "users")
    gateways: list[Gateway] = []
    admin_ports: list[int] = []
    try:
        redis.start()
        for name in ("a", "b"):
            port, admin_port = free_port(), free_port()
            directory = work / name
            directory.mkdir()
            gateway = Gateway(directory, config(port, admin_port, users, redis, name), port)
            gateways.append(gateway.start())
            admin_ports.append(admin_port)
            gateway.wait_event(event="cluster", state="up")
        yield Setup(redis, gateways, admin_ports)
    finally:
        for gateway in gateways:
            gateway.stop()
        redis.stop()


def test_a_revocation_ends_the_users_tunnels_everywhere(setup: Setup) -> None:
    alice = [setup.open(0, "alice"), setup.open(1, "alice"), setup.open(1, "alice")]
    bob = setup.open(1, "bob")

    # the tunnel list is cluster-wide (each instance's, as of its last heartbeat)
    def listed() -> bool:
        status, body = setup.api(0, "GET", "/api/tunnels")
        return status == 200 and sorted((t["instance"], t["user"]) for t in body["tunnels"]) == [
            ("a", "alice"),
            ("b", "alice"),
            ("b", "alice"),
            ("b", "bob"),
        ]

    wait_for(listed, 10, "the cluster-wide tunnel list")

    sent = time.monotonic()
    status, body = setup.api(
        0, "POST", "/api/revocations", {"kind": "user", "value": "alice", "seconds": 3600}
    )
    assert status == 201, body
    assert body["revocation"]["by"] == "root"
    for ws in alice:
        assert expect_close(ws, 5) == (1008, "revoked")
    assert time.monotonic() - sent < 2.0
    bob.send_binary(b"still")
    assert bob.recv() == b"still"
    assert setup.status(0, "alice") == 403
    assert setup.status(1, "alice") == 403
    assert setup.status(1, "bob") == 101
    for gateway, count in ((setup.gateways[0], 1), (setup.gateways[1], 2)):
        gateway.wait_event(event="tunnel_revoked", by="revocation")
        revoked = [e for e in gateway.events() if e.get("event") == "tunnel_revoked"]
        assert len(revoked) == count
    bob.close()


def test_the_command_line(setup: Setup, tmp_path: Path) -> None:
    auth = tmp_path / "auth"
    auth.write_text(basic("root") + "\n")
    admin = f"http://127.0.0.1:{setup.admin_ports[1]}"

    def tunnels() -> str:
        result = subprocess.run(
            [str(BIN / "tunnelgw"), "tunnels", "--admin", admin, "--auth-file", str(auth)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    ws = setup.open(0, "bob")
    wait_for(lambda: " bob " in tunnels(), 10, "bob's tunnel listed")
    [header, *rows] = tunnels().splitlines()
    assert header.split() == [
        "instance",
        "user",
        "service",
        "subprotocol",
        "origin",
        "bytes_up",
        "bytes_down",
        "since",
    ]
    assert any(row.split()[:4] == ["a", "bob", "echo", "echo"] for row in rows), rows
    result = subprocess.run(
        [
            str(BIN / "tunnelgw"),
            "revoke",
            "--admin",
            admin,
            "--auth-file",
            str(auth),
            "--user",
            "bob",
            "--for",
            "1m",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and result.stdout.startswith("revoked user bob until "), result
    assert expect_close(ws, 5) == (1008, "revoked")
    wrong = subprocess.run(
        [str(BIN / "tunnelgw"), "tunnels", "--admin", admin], capture_output=True, text=True, timeout=60
    )
    assert (wrong.returncode, wrong.stderr) == (1, "tunnelgw tunnels: HTTP 401 authentication required\n")


def test_failed_logins_are_counted_across_instances(setup: Setup) -> None:
    def attempt(i: int) -> int:
        url = setup.gateways[i].url("/echo")
        wrong = "Basic " + base64.b64encode(b"erin:not-her-password").decode()
        return handshake_status(url, subprotocols=["echo"], headers={"Authorization": wrong})[0]

    assert [attempt(0) for _ in range(3)] == [401, 401, 401]
    # b has counted none of them itself: it learns a's from Redis with its
    # first count, and refuses from then on
    statuses = [attempt(1) for _ in range(3)]
    assert statuses[0] == 401 and statuses[-1] == 429, statuses
    # a learns b's with its own next count: one guess more there at most
    assert [attempt(0) for _ in range(2)][-1] == 429


def test_a_tunnel_cap_holds_across_instances(setup: Setup) -> None:
    first, second = setup.open(0, "dave", "/capped"), setup.open(1, "dave", "/capped")
    assert setup.status(0, "dave", "/capped") == 429
    assert setup.status(1, "dave", "/capped") == 429
    first.close()  # its close handshake done: the tunnel ends, its lease is given back
    wait_for(lambda: setup.status(0, "dave", "/capped") == 101, 10, "a place given back across instances")
    second.close()


def test_redis_down_then_back(setup: Setup) -> None:
    ws = setup.open(0, "carol")
    setup.redis.stop()
    down = time.monotonic()
    setup.gateways[0].wait_event(event="cluster", state="down")
    # open tunnels stay; admissions go on for the grace period
    ws.send_binary(b"during")
    assert ws.recv() == b"during"
    if time.monotonic() - down < GRACE - 0.5:
        assert setup.status(0, "carol") == 101
    # then they are refused (when_down = "refuse"), or go on with this
    # process's knowledge alone (when_down = "local")
    wait_for(lambda: setup.status(0, "carol") == 503, GRACE + 5, "admissions refused after the grace period")
    assert setup.status(1, "carol") == 101
    assert setup.status(1, "alice") == 403  # the revocation it knows still holds
    # back on Redis: caught up, admitting again, the revocation still in force
    setup.redis.start()
    wait_for(lambda: setup.status(0, "carol") == 101, 30, "admissions once Redis is back")
    assert setup.status(0, "alice") == 403
    ws.send_binary(b"after")
    assert ws.recv() == b"after"
    ws.close()


def test_a_dead_instances_leases_end_within_their_ttl(setup: Setup) -> None:
    def ups() -> int:
        return sum(
            1 for e in setup.gateways[1].events() if e.get("event") == "cluster" and e.get("state") == "up"
        )

    wait_for(lambda: ups() >= 2, 30, "instance b back on Redis")
    held = [setup.open(1, "dave", "/capped"), setup.open(1, "dave", "/capped")]
    assert setup.status(0, "dave", "/capped") == 429
    proc = setup.gateways[1].proc
    assert proc is not None
    proc.kill()  # no goodbye: its leases stay in Redis until they end
    proc.wait(10)
    killed = time.monotonic()
    wait_for(lambda: setup.status(0, "dave", "/capped") == 101, 10, "the dead instance's leases to end")
    assert time.monotonic() - killed < 3 + 1.5  # lease_ttl, and a heartbeat's slack
    del held


def test_the_admin_page_in_chromium(tmp_path: Path) -> None:
    """
    One instance (no Redis: the page works the same on its own), the
    admin page in headless Chromium: it lists the open tunnels, and its
    revoke button ends the user's tunnel.
    """
    peers = REPO / "tests" / "peers"
    node = shutil.which("node")
    if (
        node is None
        or shutil.which("chromium") is None
        or not (peers / "node_modules" / "playwright-core").exists()
    ):
        raise RuntimeError(
            "chromium, node or playwright-core missing: run tests/peers/install.sh (make test does)"
        )
    users = write_users(tmp_path / "users")
    port, admin_port = free_port(), free_port()
    gateway = Gateway(tmp_path, config(port, admin_port, users, None, "solo"), port).start()
    try:
        setup = Setup(None, [gateway], [admin_port])
        alice, bob = setup.open(0, "alice"), setup.open(0, "bob")
        closed: list[tuple[int, str]] = []
        reader = threading.Thread(target=lambda: closed.append(expect_close(alice, 80)), daemon=True)
        reader.start()  # the close frame read as it comes, while the browser runs
        cfg = {
            "url": f"http://127.0.0.1:{admin_port}/",
            "user": "root",
            "password": USERS["root"],
            "revoke": "alice",
            "expect": 2,
        }
        proc = subprocess.run(
            [node, str(peers / "admin_page.mjs"), json.dumps(cfg)], capture_output=True, timeout=90, cwd=peers
        )
        lines = [json.loads(line) for line in proc.stdout.decode().splitlines() if line.startswith("{")]
        assert proc.returncode == 0 and lines, (proc.returncode, proc.stdout, proc.stderr)
        result = lines[-1]
        assert result["error"] is None, result
        assert sorted(row[:3] for row in result["rows"]) == [
            ["local", "alice", "echo"],
            ["local", "bob", "echo"],
        ]
        assert [row[1] for row in result["after"]] == ["bob"]
        assert result["inline"] is False
        assert result["errors"] == [] or all("Content Security Policy" in e for e in result["errors"]), result
        reader.join(10)
        assert closed == [(1008, "revoked")]
        bob.send_binary(b"still")
        assert bob.recv() == b"still"
        [issued] = [e for e in gateway.events() if e.get("event") == "revocation_issued"]
        assert (issued["by"], issued["value"]) == ("root", "alice")
    finally:
        gateway.stop()
