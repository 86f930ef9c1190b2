"""
The C{ldap} login module against a real directory (Debian's OpenLDAP
slapd): over StartTLS and over ldaps://, with a search account and
groups; wrong passwords, unknown users, a filter's metacharacters and an
untrusted certificate are refused with 401; a user the directory no
longer holds loses the tunnel at the next revalidation; no password in
any log line.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.certs import CA
from tests.integration.harness import Gateway, expect_close, free_port, handshake_status, ws_connect
from tests.integration.slapd import PASSWORDS, SEARCH_DN, SEARCH_PASSWORD, SUFFIX, Slapd


def realm(name: str, url: str, ca: Path, slapd: Slapd, interval: str = "") -> str:
    options = (
        f'url = "{url}", ca = "{ca}", base_dn = "ou=people,{SUFFIX}", '
        f'filter = "(&(objectClass=inetOrgPerson)(uid={{user}}))", '
        f'bind_dn = "{SEARCH_DN}", bind_password_file = "{slapd.search_password_file}", '
        f'group_base_dn = "ou=groups,{SUFFIX}"'
    )
    return f"""
[realms.{name}]
challenge = "Basic"
{interval}
[[realms.{name}.modules]]
module = "ldap"
flag = "required"
options = {{ {options} }}
"""


def service(name: str, realm_name: str, role: str) -> str:
    return f"""
[services.{name}]
path = "/{name}"
adapter = "echo"
realm = "{realm_name}"
require_roles = ["{role}"]
allow_no_subprotocol = true
allow_missing_origin = true
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, Slapd]]:
    work = tmp_path_factory.mktemp("ldap")
    ca = CA(work)
    (work / "other").mkdir()
    other = CA(work / "other", "another CA")
    slapd = Slapd(work / "slapd", ca).start()
    port = free_port()
    config = f"""
[gateway]
listen = ["tcp:{port}:interface=127.0.0.1"]
{realm("starttls", slapd.url, ca.cert_path, slapd, "revalidate_interval = 1")}
{realm("ldaps", slapd.tls_url, ca.cert_path, slapd)}
{realm("untrusted", slapd.tls_url, other.cert_path, slapd)}
{service("vnc", "starttls", "vnc")}
{service("ops", "ldaps", "ops")}
{service("untrusted", "untrusted", "ops")}
"""
    gateway = Gateway(work, config, port).start()
    try:
        yield gateway, slapd
    finally:
        gateway.stop()
        slapd.stop()


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def failures(gateway: Gateway, realm_name: str) -> list[str]:
    return [
        e["reason"]
        for e in gateway.events()
        if e.get("event") == "login_module" and e.get("realm") == realm_name and e.get("outcome") == "failure"
    ]


@pytest.mark.parametrize("path", ["/vnc", "/ops"], ids=["starttls", "ldaps"])
def test_a_good_password_and_the_groups_roles(setup: Any, path: str) -> None:
    gateway, _ = setup
    ws = ws_connect(gateway.url(path), header=basic("alice", PASSWORDS["alice"]))
    ws.send("hi")
    assert ws.recv() == "hi"
    ws.close()
    event = gateway.wait_event(event="admission", decision="accept", path=path)
    assert event["principal"] == "alice"


def test_refusals(setup: Any) -> None:
    gateway, _ = setup
    cases = {
        "wrong password for 'alice'": basic("alice", "wrong"),
        "no directory entry for 'mallory'": basic("mallory", "x"),
        "no directory entry for '*'": basic("*", "x"),
        "no directory entry for '*)(uid=*'": basic("*)(uid=*", "x"),
        "an empty password for 'alice' (an unauthenticated bind)": basic("alice", ""),
    }
    for why, headers in cases.items():
        status, _ = handshake_status(gateway.url("/vnc"), headers=headers)
        assert status == 401, why
        assert handshake_status.headers["WWW-Authenticate"] == 'Basic realm="starttls"'  # type: ignore[attr-defined]
    deadline = time.time() + 10
    while not set(cases) <= set(failures(gateway, "starttls")) and time.time() < deadline:
        time.sleep(0.05)
    assert set(cases) <= set(failures(gateway, "starttls"))


def test_a_user_without_the_role_is_403(setup: Any) -> None:
    gateway, _ = setup
    status, _ = handshake_status(gateway.url("/vnc"), headers=basic("bob", PASSWORDS["bob"]))
    assert status == 403
    assert handshake_status(gateway.url("/ops"), headers=basic("carol", PASSWORDS["carol"]))[0] == 101


def test_a_directory_certificate_from_another_ca(setup: Any) -> None:
    gateway, _ = setup
    status, _ = handshake_status(gateway.url("/untrusted"), headers=basic("alice", PASSWORDS["alice"]))
    assert status == 401
    reason = gateway.wait_event(event="login_module", realm="untrusted", outcome="failure")["reason"]
    assert "certificate verify failed" in reason


def test_no_password_in_any_log_line(setup: Any) -> None:
    gateway, _ = setup
    handshake_status(gateway.url("/vnc"), headers=basic("alice", PASSWORDS["alice"]))
    handshake_status(gateway.url("/vnc"), headers=basic("alice", "wrong-Secret-typed-9"))
    log = Path(gateway.log_path).read_text()
    for secret in [*PASSWORDS.values(), SEARCH_PASSWORD, "wrong-Secret-typed-9"]:
        assert secret not in log


def test_a_user_removed_from_the_directory_loses_the_tunnel(setup: Any) -> None:
    """Last: alice is deleted from the directory while it runs."""
    gateway, slapd = setup
    # the starttls realm revalidates every second
    ws = ws_connect(gateway.url("/vnc"), header=basic("alice", PASSWORDS["alice"]))
    time.sleep(1.5)  # revalidated at least once: still there
    ws.send("still")
    assert ws.recv() == "still"
    removed_at = time.time()
    slapd.remove(f"uid=alice,ou=people,{SUFFIX}")
    code, _ = expect_close(ws, 10)
    assert code == 1008
    assert time.time() - removed_at <= 3
    gateway.wait_event(event="tunnel_revoked", by="revalidation", principal="alice")
