"""
VNC through the gateway's rfb adapter with real peers: stock noVNC (npm
@novnc/novnc, unmodified) in Debian's headless Chromium, driven by
playwright-core, connects to Xvfb + x11vnc with and without a VNC
password, offering no subprotocol and offering "binary"; the canvas shows
the remote yellow terminal.  The gateway injects the VNC password so the
browser needs none; a view-only user's keys never reach the remote
terminal while an operator's do; a server offering only security type
None is refused where the service forbids it.
"""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import struct
import subprocess
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import REPO, Gateway, expect_close, free_port, wait_for, ws_connect
from tests.integration.vnc import Desktop

PEERS = REPO / "tests" / "peers"
VNC_PASSWORD = "vncpw123"


class Setup:
    def __init__(self, gateway: Gateway, page_origin: str, open_desktop: Desktop, locked: Desktop) -> None:
        self.gateway = gateway
        self.page_origin = page_origin
        self.open_desktop = open_desktop
        self.locked = locked


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    work = tmp_path_factory.mktemp("vnc")
    desktops: list[Desktop] = []
    gateway: Gateway | None = None
    handler = functools.partial(_QuietHandler, directory=str(PEERS))
    pages = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=pages.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{pages.server_address[1]}"
    try:
        open_desktop = Desktop(work / "open").start()
        desktops.append(open_desktop)
        locked = Desktop(work / "locked", password=VNC_PASSWORD).start()
        desktops.append(locked)
        port = free_port()

        def service(name: str, desktop: Desktop, realm: str, rfb: str) -> str:
            return f"""
[services.{name}]
path = "/{name}"
adapter = "rfb"
realm = "{realm}"
policy = "desktop"
upstream = "tcp:127.0.0.1:{desktop.port}"
subprotocols = ["binary"]
allow_no_subprotocol = true
origins = ["{origin}"]
[services.{name}.rfb]
{rfb}
"""

        config = f"""
[gateway]
listen = ["tcp:{port}:interface=127.0.0.1"]

[realms.operators]
[[realms.operators.modules]]
module = "anonymous"
flag = "required"
options = {{ roles = ["operators"] }}

[realms.viewers]
[[realms.viewers.modules]]
module = "anonymous"
flag = "required"
options = {{ roles = ["viewers"] }}

[policies.desktop]
[[policies.desktop.rules]]
roles = ["operators"]
actions = ["input"]
resources = ["*"]
{service("vnc-open", open_desktop, "operators", 'security_types = ["none"]')}
{service("vnc-view", open_desktop, "viewers", 'security_types = ["none"]')}
{service("vnc-locked", locked, "operators", 'security_types = ["vnc"]')}
{service("vnc-inject", locked, "operators", f'password = "{VNC_PASSWORD}"')}
{service("vnc-no-none", open_desktop, "operators", 'security_types = ["vnc"]')}
"""
        gw_dir = work / "gw"
        gw_dir.mkdir()
        gateway = Gateway(gw_dir, config, port).start()
        yield Setup(gateway, origin, open_desktop, locked)
    finally:
        if gateway is not None:
            gateway.stop()
        for desktop in desktops:
            desktop.stop()
        pages.shutdown()


def novnc(setup: Setup, path: str, tmp: Path, **page: Any) -> dict[str, Any]:
    """
    Open stock noVNC in Chromium against C{path}; what it saw.
    """
    chromium = shutil.which("chromium")
    node = shutil.which("node")
    if chromium is None or node is None or not (PEERS / "node_modules" / "playwright-core").exists():
        raise RuntimeError(
            "chromium, node or playwright-core missing: run tests/peers/install.sh (make test does)"
        )
    typed = page.pop("type", None)
    page["url"] = setup.gateway.url(path)
    screenshot = tmp / "canvas.png"
    cfg = {
        "page": f"{setup.page_origin}/novnc_page.html?cfg={urllib.parse.quote(json.dumps(page))}",
        "screenshot": str(screenshot),
        "type": typed,
    }
    proc = subprocess.run(
        [node, str(PEERS / "novnc_check.mjs"), json.dumps(cfg)], capture_output=True, timeout=90, cwd=PEERS
    )
    lines = [json.loads(line) for line in proc.stdout.decode().splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and lines, (proc.returncode, proc.stdout, proc.stderr)
    result: dict[str, Any] = lines[-1]
    assert result["error"] is None, result
    if result["connected"]:
        assert screenshot.read_bytes().startswith(b"\x89PNG"), "no screenshot of the canvas"
    return result


@pytest.mark.parametrize("protocols", [None, ["binary"]], ids=["no-subprotocol", "binary"])
@pytest.mark.parametrize("locked", [False, True], ids=["no-password", "password"])
def test_novnc_shows_the_remote_screen(
    setup: Setup, tmp_path: Path, locked: bool, protocols: list[str] | None
) -> None:
    page: dict[str, Any] = {}
    if protocols is not None:
        page["wsProtocols"] = protocols
    if locked:
        page["password"] = VNC_PASSWORD
    result = novnc(setup, "/vnc-locked" if locked else "/vnc-open", tmp_path, **page)
    assert result["connected"], result
    assert not [e for e in result["events"] if e.startswith("securityfailure")]
    # the canvas shows the remote terminal: yellow over most of the screen
    assert result["yellow"] > 0.5, result
    event = setup.gateway.wait_event(event="rfb_session", security="VNC authentication" if locked else "None")
    assert event["view_only"] is False


def test_injected_password_no_prompt(setup: Setup, tmp_path: Path) -> None:
    result = novnc(setup, "/vnc-inject", tmp_path)
    assert result["connected"], result
    assert "credentialsrequired" not in result["events"]
    assert result["yellow"] > 0.5, result
    setup.gateway.wait_event(event="rfb_session", injected=True)


def test_view_only_keys_do_not_reach_the_remote_screen(setup: Setup, tmp_path: Path) -> None:
    desktop = setup.open_desktop
    before = desktop.screen()
    viewer = novnc(setup, "/vnc-view", tmp_path, type="viewer-was-here")
    assert viewer["connected"] and viewer["yellow"] > 0.5, viewer
    assert desktop.typed.read_text() == ""
    assert desktop.screen() == before, "a view-only user changed the remote screen"
    setup.gateway.wait_event(event="rfb_input_dropped")

    operator = novnc(setup, "/vnc-open", tmp_path, type="operator-was-here")
    assert operator["connected"], operator
    wait_for(
        lambda: "operator-was-here" in desktop.typed.read_text(), 10, "the operator's keys in the terminal"
    )
    assert desktop.screen() != before, "the typed text should show on the remote terminal"


def test_server_offering_only_none_is_refused(setup: Setup) -> None:
    ws = ws_connect(setup.gateway.url("/vnc-no-none"), subprotocols=["binary"], origin=setup.page_origin)
    assert ws.recv() == b"RFB 003.008\n"
    ws.send_binary(b"RFB 003.008\n")
    failure = ws.recv()
    reason = b"the server offers None; this service allows VNC authentication"
    assert failure == b"\x00" + struct.pack("!I", len(reason)) + reason
    assert expect_close(ws)[0] == 1008
    event = setup.gateway.wait_event(event="rfb_refused")
    assert event["code"] == 1008
