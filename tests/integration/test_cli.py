"""
The operator's command line: check-config, twistd start-up errors, and a
wheel that carries the twistd plugin.
"""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.integration.harness import (
    BIN,
    REPO,
    EchoServer,
    Gateway,
    expect_close,
    free_port,
    raw_gateway_config,
    ws_connect,
)


def run(*args: str, cwd: Path = REPO, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_check_config_accepts_the_example() -> None:
    result = run(str(BIN / "tunnelgw"), "check-config", "etc/tunnelgw.toml")
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout and "vnc (/vnc)" in result.stdout


def test_check_config_names_the_bad_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[gateway]\nlisten = ["tcp:1"]\n[realms.r]\n[[realms.r.modules]]\nmodule = "anonymous"\nflag = "required"\n'
        '[services.x]\npath = "/x"\nadapter = "echo"\nrealm = "r"\n'
        "allow_no_subprotocol = true\n[services.x.limits]\nmax_frame_sise = 5\n"
    )
    result = run(str(BIN / "python"), "-m", "tunnelgw", "check-config", str(bad))
    assert result.returncode == 1
    assert "services.x.limits.max_frame_sise: unknown key" in result.stderr


def test_check_config_checks_listener_certificates(tmp_path: Path) -> None:
    bad = tmp_path / "tls.toml"
    bad.write_text('[gateway]\nlisten = ["ssl:8443:privateKey=/nonexistent.key:certKey=/nonexistent.pem"]\n')
    result = run(str(BIN / "tunnelgw"), "check-config", str(bad))
    assert result.returncode == 1
    assert "gateway.listen[0]" in result.stderr


def test_twistd_refuses_an_invalid_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[gateway]\nlisten = []\n")
    result = run(str(BIN / "twistd"), "-n", "--pidfile=", "tunnelgw", "--config", str(bad), cwd=tmp_path)
    assert result.returncode != 0
    assert "gateway.listen: at least one listener is needed" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("chosen", "expected"),
    [
        ([], "tunnelgw.reactor.GatewayReactor"),
        (["--reactor", "tunnelgw"], "tunnelgw.reactor.GatewayReactor"),
        (["--reactor", "epoll"], "twisted.internet.epollreactor.EPollReactor"),
    ],
)
def test_twistd_runs_the_gateway_reactor_unless_another_is_chosen(
    tmp_path: Path, chosen: list[str], expected: str
) -> None:
    echo = EchoServer()
    port = free_port()
    gateway = Gateway(tmp_path, raw_gateway_config(f"tcp:{port}:interface=127.0.0.1", echo.port), port)
    gateway.twistd += chosen
    try:
        gateway.start()
        assert gateway.wait_event(log_format="reactor class: {reactor}.")["reactor"] == expected
        ws = ws_connect(gateway.url("/raw"), subprotocols=["binary"])  # and it relays
        ws.send_binary(b"through the reactor")
        assert ws.recv() == b"through the reactor"
        ws.send_close(1000)
        assert expect_close(ws)[0] == 1000
    finally:
        gateway.stop()
        echo.close()


def test_wheel_ships_the_plugin_and_no_twisted_init(tmp_path: Path) -> None:
    result = run(
        str(BIN / "python"),
        "-m",
        "build",
        "--wheel",
        "--no-isolation",
        "--outdir",
        str(tmp_path),
        ".",
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = tmp_path.glob("tunnelgw-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "twisted/plugins/tunnelgw_plugin.py" in names
    assert "twisted/__init__.py" not in names
    assert "twisted/plugins/__init__.py" not in names
    # every package of the source tree is in the wheel
    for init in (REPO / "tunnelgw").rglob("__init__.py"):
        assert str(init.relative_to(REPO)) in names, init


def test_hash_password() -> None:
    from argon2 import PasswordHasher

    result = subprocess.run(
        [str(BIN / "tunnelgw"), "hash-password"], input="s3cret\n", capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    digest = result.stdout.strip()
    assert digest.startswith("$argon2id$") and PasswordHasher().verify(digest, "s3cret")
