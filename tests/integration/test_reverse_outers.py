"""
Reverse links across outer instances: an inner gateway keeps links to each
of two outer instances (one [[gateway.reverse_links]] per instance), so a
client reaches the inner service through either outer, as it would behind
a load balancer in front of the outers.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from cryptography.hazmat.primitives.asymmetric import ec

from tests.integration.certs import CA
from tests.integration.harness import EchoServer, Gateway, free_port, wait_for, ws_connect
from tests.integration.test_chain import public, write_key

FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
OUTER_NAME = "outer.tunnelgw.test"


class Setup:
    def __init__(self, outers: list[Gateway], inner: Gateway) -> None:
        self.outers = outers
        self.inner = inner


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    work: Path = tmp_path_factory.mktemp("reverse-outers")
    ca = CA(work)
    inner_cert, inner_key = ca.issue("inner-1", ["inner.tunnelgw.test"])
    users = work / "users"
    users.write_text(f"alice:{FAST.hash('alice-pw')}:staff\n")
    echo = EchoServer()
    gateways: list[Gateway] = []
    try:
        outers, trusted, links = [], [], []
        for n in (1, 2):
            cert, key = ca.issue(f"outer-{n}", [OUTER_NAME])
            signing = ec.generate_private_key(ec.SECP256R1())
            signing_path = write_key(work / f"outer-{n}-assertion.key", signing)
            verify = public(work / f"outer-{n}-assertion.pub", signing)
            trusted.append(
                f'{{ issuer = "outer-{n}", key_file = "{verify}", certificate_subject = "CN=outer-{n}" }}'
            )
            port, link_port = free_port(), free_port()
            links.append(
                f"""[[gateway.reverse_links]]
outer = "wss://127.0.0.1:{link_port}/tunnelgw/link"
server_name = "{OUTER_NAME}"
ca = "{ca.cert_path}"
client_certificate = "{inner_cert}"
client_key = "{inner_key}"
pool = 2
backoff_initial = 0.2
backoff_max = 1
"""
            )
            directory = work / f"outer-{n}"
            directory.mkdir()
            outers.append(
                Gateway(
                    directory,
                    f"""
[gateway]
listen = ["tcp:{port}:interface=127.0.0.1"]
[[gateway.tls_listeners]]
endpoint = "tcp:{link_port}:interface=127.0.0.1"
certificate = "{cert}"
private_key = "{key}"
client_ca = "{ca.cert_path}"
require_client_certificate = true

[links.inner-1]
path = "/tunnelgw/link"
certificate_subject = "CN=inner-1"
wait_timeout = 2

[realms.staff]
[[realms.staff.modules]]
module = "password_file"
flag = "required"
options = {{ path = "{users}" }}

[services.app]
path = "/app"
adapter = "chain"
realm = "staff"
upstream = "reverse:inner-1"
subprotocols = ["binary"]
allow_missing_origin = true
[services.app.chain]
assertion_key = "{signing_path}"
issuer = "outer-{n}"
audience = "inner-1"
""",
                    port,
                )
            )
        for outer in outers:
            gateways.append(outer.start())
        inner_dir = work / "inner"
        inner_dir.mkdir()
        inner_config = f"""
[gateway]
{"".join(links)}
[realms.from-outer]
[[realms.from-outer.modules]]
module = "assertion"
flag = "required"
options = {{ audience = "inner-1", trusted = [{", ".join(trusted)}] }}

[services.app]
path = "/app"
adapter = "raw"
realm = "from-outer"
require_roles = ["staff"]
upstream = "tcp:127.0.0.1:{echo.port}"
subprotocols = ["binary"]
allow_missing_origin = true
"""
        inner = Gateway(inner_dir, inner_config, 0)  # it listens on nothing: it dials out
        gateways.append(inner.start())
        wait_for(
            lambda: len([e for e in inner.events() if e.get("event") == "link_open"]) >= 4, 20, "4 links open"
        )
        yield Setup(outers, inner)
    finally:
        for gateway in gateways:
            gateway.stop()
        echo.close()


def test_both_outer_instances_serve_the_reverse_service(setup: Setup) -> None:
    auth = "Basic " + base64.b64encode(b"alice:alice-pw").decode()
    for outer in setup.outers:
        ws = ws_connect(outer.url("/app"), subprotocols=["binary"], header=[f"Authorization: {auth}"])
        ws.send_binary(b"through " + outer.url("/app").encode())
        assert ws.recv() == b"through " + outer.url("/app").encode()
        ws.close()
    outers = {e["outer"] for e in setup.inner.events() if e.get("event") == "link_open"}
    assert len(outers) == 2
