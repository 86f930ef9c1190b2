"""
A login module from another package: examples/tunnelgw-example-plugin is
built into a wheel, installed into a fresh virtual environment, found
through twisted.plugin, validated by check-config, and used by a gateway
run from that environment.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

from tests.integration.harness import REPO, Gateway, free_port, handshake_status

TOKEN = "monitoring-service-token-0123456789"


def run(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def plugin_env(tmp_path: Path, *examples: str) -> tuple[Path, Path]:
    """
    A fresh virtual environment where the example packages C{examples}
    (directories of examples/) are built into wheels and installed, each
    on its own; tunnelgw and its dependencies come from the project's
    environment (as if installed already).

    @return: the environment's python and its site-packages.
    """
    dist = tmp_path / "dist"
    for example in examples:
        run(
            [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), "."],
            REPO / "examples" / example,
        )
    env = tmp_path / "env"
    venv.EnvBuilder(with_pip=True).create(env)
    python = env / "bin" / "python"
    site = Path(
        run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], tmp_path
        ).stdout.strip()
    )
    (site / "borrowed.pth").write_text(f"import site; site.addsitedir({sysconfig.get_path('purelib')!r})\n")
    wheels = sorted(str(wheel) for wheel in dist.glob("*.whl"))
    assert len(wheels) == len(examples), wheels
    run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", *wheels], tmp_path)
    assert not (site / "tunnelgw" / "plugins" / "__init__.py").exists()
    return python, site


def checked_gateway(python: Path, work: Path, config: str, port: int, unknown: str) -> Gateway:
    """
    C{config} validated by check-config in the plugins' environment, and
    refused in the project's own (where the plugins are not: C{unknown}
    is in its answer); then a gateway on it, run with that environment's
    twistd (not started).
    """
    work.mkdir()
    (work / "check.toml").write_text(config)
    checked = run([str(python), "-m", "tunnelgw", "check-config", str(work / "check.toml")], work)
    assert "valid" in checked.stdout
    plain = subprocess.run(
        [sys.executable, "-m", "tunnelgw", "check-config", str(work / "check.toml")],
        capture_output=True,
        text=True,
    )
    assert plain.returncode == 1 and unknown in plain.stderr, plain.stderr
    gateway = Gateway(work, config, port)
    gateway.twistd = [str(python), "-c", "from twisted.scripts.twistd import run; run()"]
    return gateway


def test_example_plugin_from_its_own_installed_package(tmp_path: Path) -> None:
    python, site = plugin_env(tmp_path, "tunnelgw-example-plugin")
    assert (site / "tunnelgw" / "plugins" / "example_static_token.py").exists()

    port = free_port()
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    config = f"""
[gateway]
listen = ["tcp:{port}:interface=127.0.0.1"]

[realms.services]
challenge = "Bearer"
[[realms.services.modules]]
module = "static_token"
flag = "required"
options = {{ token_sha256 = "{digest}", user = "monitoring", roles = ["health"] }}

[services.echo]
path = "/echo"
adapter = "echo"
realm = "services"
require_roles = ["health"]
allow_no_subprotocol = true
allow_missing_origin = true
"""
    # the same package is invisible to the project's own environment
    gateway = checked_gateway(python, tmp_path / "gw", config, port, "unknown login module 'static_token'")
    gateway.start()
    try:
        assert handshake_status(gateway.url("/echo"), headers={"Authorization": f"Bearer {TOKEN}"})[0] == 101
        assert handshake_status(gateway.url("/echo"), headers={"Authorization": "Bearer wrong"})[0] == 401
        event = gateway.wait_event(event="admission", decision="accept", path="/echo")
        assert event["principal"] == "monitoring"
    finally:
        gateway.stop()
