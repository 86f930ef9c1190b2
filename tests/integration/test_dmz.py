"""
Layered DMZs in a topology of network namespaces the suite builds itself
(tests/integration/netns.py): client → outer (DMZ 1) → inner (DMZ 2) →
backend, in forward mode (the outer connects to the inner's one open
port) and in reverse mode (the inner dials out; its zone drops every
inbound SYN).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.integration.certs import CA
from tests.integration.harness import BIN, REPO, json_lines, wait_for
from tests.integration.netns import Topology
from tests.integration.test_chain import FAST, USERS, public, write_key
from tunnelgw.security import Subject
from tunnelgw.security.signer import AssertionSigner

PEERS = REPO / "tests" / "peers"
INNER_PORT, OUTER_PORT, LINK_PORT, ECHO_PORT = 8443, 8080, 9443, 7000
INNER_NAME, OUTER_NAME = "inner.tunnelgw.test", "outer.tunnelgw.test"


class Dmz:
    def __init__(self, work: Path, reverse: bool) -> None:
        self.work = work
        self.reverse = reverse
        self.net = Topology()
        a = self.net.address
        self.ca = CA(work)
        self.inner_cert, self.inner_key = self.ca.issue("inner-1", [INNER_NAME])
        self.outer_cert, self.outer_key = self.ca.issue("outer-1", [OUTER_NAME])
        self.signing_key = ec.generate_private_key(ec.SECP256R1())
        signing = write_key(work / "assertion.key", self.signing_key)
        verify = public(work / "assertion.pub", self.signing_key)
        users = work / "users"
        users.write_text(f"alice:{FAST.hash(USERS['alice'])}:staff\nbob:{FAST.hash(USERS['bob'])}:guest\n")
        inner_listen = (
            f"""[[gateway.reverse_links]]
outer = "wss://{a["outer_dmz"]}:{LINK_PORT}/tunnelgw/link"
server_name = "{OUTER_NAME}"
ca = "{self.ca.cert_path}"
client_certificate = "{self.inner_cert}"
client_key = "{self.inner_key}"
pool = 2
backoff_initial = 0.2
backoff_max = 1
ping_interval = 60
"""
            if reverse
            else f"""[[gateway.tls_listeners]]
endpoint = "tcp:{INNER_PORT}:interface={a["inner"]}"
certificate = "{self.inner_cert}"
private_key = "{self.inner_key}"
client_ca = "{self.ca.cert_path}"
require_client_certificate = true
"""
        )
        self.inner_config = f"""
[gateway]
{inner_listen}
[realms.from-outer]
[[realms.from-outer.modules]]
module = "assertion"
flag = "required"
options = {{ audience = "inner-1", trusted = [{{ issuer = "outer-1", key_file = "{verify}", certificate_subject = "CN=outer-1" }}] }}

[services.app]
path = "/app"
adapter = "raw"
realm = "from-outer"
require_roles = ["staff"]
upstream = "tcp:{a["backend"]}:{ECHO_PORT}"
subprotocols = ["binary"]
allow_no_subprotocol = true
allow_missing_origin = true
"""
        chain_tls = f"""client_certificate = "{self.outer_cert}"
client_key = "{self.outer_key}"
ca = "{self.ca.cert_path}"
server_name = "{INNER_NAME}"
"""
        outer_links = f"""[[gateway.tls_listeners]]
endpoint = "tcp:{LINK_PORT}:interface={a["outer_dmz"]}"
certificate = "{self.outer_cert}"
private_key = "{self.outer_key}"
client_ca = "{self.ca.cert_path}"
require_client_certificate = true

[links.inner-1]
path = "/tunnelgw/link"
certificate_subject = "CN=inner-1"
wait_timeout = 2
ping_interval = 60
"""
        upstream = "reverse:inner-1" if reverse else f"wss://{a['inner']}:{INNER_PORT}/app"
        self.outer_config = f"""
[gateway]
listen = ["tcp:{OUTER_PORT}:interface={a["outer"]}"]
{outer_links if reverse else ""}
[realms.staff]
[[realms.staff.modules]]
module = "password_file"
flag = "required"
options = {{ path = "{users}" }}

[services.app]
path = "/app"
adapter = "chain"
realm = "staff"
upstream = "{upstream}"
subprotocols = ["binary"]
allow_no_subprotocol = true
allow_missing_origin = true
[services.app.chain]
{"" if reverse else chain_tls}assertion_key = "{signing}"
issuer = "outer-1"
audience = "inner-1"
"""
        self.inner: subprocess.Popen[bytes] | None = None

    def gateway(self, role: str, config: str) -> subprocess.Popen[bytes]:
        directory = self.work / role
        directory.mkdir(exist_ok=True)
        (directory / "tunnelgw.toml").write_text(config)
        log = open(directory / "gateway.log", "ab")
        proc = self.net.start(
            role,
            [
                str(BIN / "twistd"),
                "-n",
                "--pidfile=",
                "--logger",
                "tunnelgw.logs.json_observer",
                "tunnelgw",
                "--config",
                str(directory / "tunnelgw.toml"),
            ],  # fmt: skip
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=directory,
        )
        log.close()
        return proc

    def log(self, role: str) -> list[dict[str, Any]]:
        return json_lines(self.work / role / "gateway.log")

    def start_inner(self) -> None:
        self.inner = self.gateway("inner", self.inner_config)
        if not self.reverse:
            self.net.wait_port("outer", self.net.address["inner"], INNER_PORT)

    def links_up(self, count: int = 1) -> None:
        def up() -> bool:
            return sum(1 for e in self.log("inner") if e.get("event") == "link_open") >= count

        wait_for(up, 20, "reverse links to open")

    def start(self) -> Dmz:
        self.net.build(INNER_PORT, self.reverse)
        a = self.net.address
        self.net.start(
            "backend",
            [sys.executable, str(PEERS / "tcp_echo.py"), a["backend"], str(ECHO_PORT)],
            stdout=subprocess.DEVNULL,
        )
        self.net.wait_port("inner", a["backend"], ECHO_PORT)
        if not self.reverse:
            self.start_inner()
        self.gateway("outer", self.outer_config)
        self.net.wait_port("client", a["outer"], OUTER_PORT)
        if self.reverse:
            self.start_inner()
            self.links_up()
        return self

    def client(self, mode: str, user: str | None = None, password: str | None = None) -> dict[str, Any]:
        args = [
            sys.executable,
            str(PEERS / "dmz_client.py"),
            mode,
            f"ws://{self.net.address['outer']}:{OUTER_PORT}/app",
        ]
        if user is not None:
            args.append(f"{user}:{password or USERS[user]}")
        out = subprocess.run([*self.net.exec("client"), *args], capture_output=True, timeout=120)
        lines = [json.loads(line) for line in out.stdout.decode().splitlines() if line.startswith("{")]
        assert lines, out
        result: dict[str, Any] = lines[-1]
        return result


@pytest.fixture(params=["forward", "reverse"], scope="module")
def dmz(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dmz]:
    setup = Dmz(tmp_path_factory.mktemp(f"dmz-{request.param}"), reverse=request.param == "reverse")
    try:
        yield setup.start()
    finally:
        setup.net.destroy()


def test_the_topology_isolates_each_zone(dmz: Dmz) -> None:
    a, net = dmz.net.address, dmz.net
    assert not net.port_open("client", a["inner"], INNER_PORT)  # no route inward
    assert not net.port_open("client", a["backend"], ECHO_PORT)
    assert not net.port_open("outer", a["backend"], ECHO_PORT)
    # forward: only the inner gateway's port; reverse: nothing at all
    assert net.port_open("outer", a["inner"], INNER_PORT) is (not dmz.reverse)
    assert not net.port_open("outer", a["inner"], 22)


def test_64mib_each_way(dmz: Dmz) -> None:
    result = dmz.client("pump", "alice")
    assert result == {"equal": True, "received": 64 * 1024 * 1024}


def test_no_secret_and_no_debug_event_in_either_gateways_log(dmz: Dmz) -> None:
    """
    After sessions through the chain (forward: the outer dials the inner;
    reverse: the inner dialled out), neither log holds a password, a Basic
    credential or an identity assertion (any JWT, not even a signature),
    and autobahn published no debug events: the outer's link protocols
    once logged their handshakes, assertion included, at debug level.
    """
    import base64
    import re

    assert dmz.client("status", "alice") == {"status": 101}
    assert dmz.client("status", "bob") == {"status": 403}
    jwt_shape = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
    for role in ("outer", "inner"):
        text = (dmz.work / role / "gateway.log").read_text()
        for user, password in USERS.items():
            assert password not in text, role
            assert base64.b64encode(f"{user}:{password}".encode()).decode() not in text, role
        assert not jwt_shape.search(text), role
        levels = {e["level"] for e in dmz.log(role)}
        assert "debug" not in levels, (role, levels)


def test_unauthenticated_clients_cause_no_packet_inward(dmz: Dmz) -> None:
    before = dmz.net.packets_from_outer()
    assert dmz.client("status") == {"status": 401}
    assert dmz.client("status", "alice", "wrong-password") == {"status": 401}
    assert dmz.net.packets_from_outer() == before


def test_the_inner_policy_still_applies(dmz: Dmz) -> None:
    assert dmz.client("status", "bob") == {"status": 403}
    refused = [e for e in dmz.log("inner") if e.get("event") == "admission" and e.get("decision") == "refuse"]
    assert refused and refused[-1]["status"] == 403


def test_forged_expired_and_certificateless_connections_to_the_inner(dmz: Dmz) -> None:
    """
    An attacker in the outer DMZ dials the inner directly: in forward mode
    its assertions are refused and without the outer's certificate TLS
    fails; in reverse mode there is nothing to dial.
    """
    a = dmz.net.address
    alice = Subject.of("alice", ["staff"])
    rogue = AssertionSigner("outer-1", "inner-1", ec.generate_private_key(ec.SECP256R1()), "ES256", 30)
    genuine = AssertionSigner("outer-1", "inner-1", dmz.signing_key, "ES256", 30)

    def direct(assertion: str, certificate: bool = True) -> dict[str, Any]:
        cert = [str(dmz.outer_cert), str(dmz.outer_key)] if certificate else []
        args = [sys.executable, str(PEERS / "dmz_client.py"), "direct", a["inner"], str(INNER_PORT), INNER_NAME,
                str(dmz.ca.cert_path), assertion, *cert]  # fmt: skip
        out = subprocess.run([*dmz.net.exec("outer"), *args], capture_output=True, timeout=30)
        result: dict[str, Any] = json.loads(out.stdout.decode().splitlines()[-1])
        return result

    if dmz.reverse:
        assert "tls_error" in direct(genuine.sign(alice, time.time()))  # the SYN is dropped
        return
    assert direct(rogue.sign(alice, time.time())) == {"status": 401}
    assert direct(genuine.sign(alice, time.time() - 300)) == {"status": 401}
    assert "tls_error" in direct(genuine.sign(alice, time.time()), certificate=False)


def test_killing_the_inner_closes_the_client_and_reverse_service_comes_back(dmz: Dmz) -> None:
    args = [sys.executable, str(PEERS / "dmz_client.py"), "hold", f"ws://{dmz.net.address['outer']}:{OUTER_PORT}/app",
            f"alice:{USERS['alice']}"]  # fmt: skip
    client = subprocess.Popen([*dmz.net.exec("client"), *args], stdout=subprocess.PIPE)
    assert client.stdout is not None
    assert json.loads(client.stdout.readline()) == {"event": "ready"}
    assert dmz.inner is not None
    killed = time.time()
    dmz.inner.kill()
    dmz.inner.wait(10)
    closed = json.loads(client.stdout.readline())
    client.wait(10)
    assert closed["code"] == 1014, closed
    assert closed["at"] - killed < 1.0
    # new sessions are refused while the inner is away
    assert dmz.client("status", "alice")["status"] in (502, 503)
    # restarting the inner restores the service, the outer untouched
    dmz.start_inner()
    if dmz.reverse:
        dmz.links_up(count=3)
    assert dmz.client("status", "alice") == {"status": 101}
