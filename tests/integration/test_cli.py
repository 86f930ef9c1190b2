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
        assert gateway.wait_event(reactor=lambda value: value is not None)["reactor"] == expected
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
    # what the gateway serves from its package: the admin page, the fallback's client
    assert "tunnelgw/front/admin_page/admin.js" in names
    assert "tunnelgw/fallback/client/tunnelsocket.js" in names
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


def test_help_is_not_an_error() -> None:
    for flag in ("--help", "-h"):
        result = run(str(BIN / "tunnelgw"), flag)
        assert result.returncode == 0, result.stderr
        assert "check-config FILE" in result.stdout
    assert run(str(BIN / "tunnelgw")).returncode == 2  # no command: a usage error


def test_a_missing_file_is_named_once(tmp_path: Path) -> None:
    missing = tmp_path / "none.toml"
    result = run(str(BIN / "tunnelgw"), "check-config", str(missing))
    assert result.returncode == 1
    assert result.stderr == f"{missing}: No such file or directory\n"


def test_a_missing_listener_certificate_is_named_once(tmp_path: Path) -> None:
    config = tmp_path / "tls.toml"
    config.write_text(
        '[gateway]\nlisten = []\n[[gateway.tls_listeners]]\nendpoint = "tcp:8443"\n'
        f'certificate = "{tmp_path}/none.pem"\nprivate_key = "{tmp_path}/none.key"\n'
    )
    result = run(str(BIN / "tunnelgw"), "check-config", str(config))
    assert result.returncode == 1
    assert result.stderr.count(f"{tmp_path}/none.pem") == 1, result.stderr
    assert "gateway.tls_listeners[0].certificate" in result.stderr


def test_a_unix_listener_in_a_missing_directory_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "unix.toml"
    config.write_text(f'[gateway]\nlisten = ["unix:{tmp_path}/no/such/dir/gw.sock"]\n')
    result = run(str(BIN / "tunnelgw"), "check-config", str(config))
    assert result.returncode == 1
    assert f"gateway.listen[0]: 'unix:{tmp_path}/no/such/dir/gw.sock': the directory" in result.stderr
    assert "does not exist" in result.stderr


def test_a_port_in_use_is_one_line_at_start(tmp_path: Path) -> None:
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        result = run(
            str(BIN / "twistd"),
            "-n",
            "--pidfile=",
            "tunnelgw",
            "--listen",
            f"tcp:{port}:interface=127.0.0.1",
            cwd=tmp_path,
        )
    finally:
        taken.close()
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert (
        f"gateway.listen[0]: cannot listen on tcp:{port}:interface=127.0.0.1: Address already in use"
        in output
    )
    assert "Traceback" not in output


def test_a_listener_twisted_cannot_parse_is_one_line_at_start(tmp_path: Path) -> None:
    config = tmp_path / "systemd.toml"
    config.write_text('[gateway]\nlisten = ["systemd:"]\n')  # neither an index nor a name
    result = run(str(BIN / "twistd"), "-n", "--pidfile=", "tunnelgw", "--config", str(config), cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert "gateway.listen[0]: invalid endpoint 'systemd:'" in output
    assert "Traceback" not in output
