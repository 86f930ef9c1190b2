"""
The embedded default configuration, run as `twistd -n tunnelgw`, serves an
RFC 6455 echo at /echo and a health endpoint.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request

import pytest
import websocket

from tests.integration.harness import BIN, expect_close, port_open, wait_for, ws_connect


@pytest.fixture(scope="module")
def default_gateway(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    if port_open(8080):
        pytest.fail("port 8080 is taken: the embedded default listens there")
    workdir = tmp_path_factory.mktemp("default")
    log = open(workdir / "out.log", "wb")
    proc = subprocess.Popen(
        [str(BIN / "twistd"), "-n", "--pidfile=", "tunnelgw"],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=workdir,
    )
    try:
        wait_for(lambda: proc.poll() is None and port_open(8080), 20, "twistd -n tunnelgw on 8080")
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


URL = "ws://127.0.0.1:8080/echo"


def test_text_and_binary_come_back_with_their_type(default_gateway) -> None:  # type: ignore[no-untyped-def]
    ws = ws_connect(URL)
    ws.send("héllo")
    opcode, data = ws.recv_data()
    assert (opcode, data) == (websocket.ABNF.OPCODE_TEXT, "héllo".encode())
    ws.send_binary(b"\x00\xff\x10")
    opcode, data = ws.recv_data()
    assert (opcode, data) == (websocket.ABNF.OPCODE_BINARY, b"\x00\xff\x10")
    ws.close()


def test_fragmented_messages_come_back_whole(default_gateway) -> None:  # type: ignore[no-untyped-def]
    ws = ws_connect(URL)
    ABNF = websocket.ABNF
    ws.send_frame(ABNF.create_frame(b"frag", ABNF.OPCODE_BINARY, fin=0))
    ws.ping(b"in between")  # control frames may interleave with fragments
    ws.send_frame(ABNF.create_frame(b"men", ABNF.OPCODE_CONT, fin=0))
    ws.send_frame(ABNF.create_frame(b"ted", ABNF.OPCODE_CONT, fin=1))
    opcode, data = ws.recv_data()
    assert (opcode, data) == (ABNF.OPCODE_BINARY, b"fragmented")
    ws.send_frame(ABNF.create_frame("tex", ABNF.OPCODE_TEXT, fin=0))
    ws.send_frame(ABNF.create_frame("t", ABNF.OPCODE_CONT, fin=1))
    assert ws.recv_data() == (ABNF.OPCODE_TEXT, b"text")
    ws.close()


def test_large_message_and_clean_close(default_gateway) -> None:  # type: ignore[no-untyped-def]
    ws = ws_connect(URL)
    payload = bytes(range(256)) * 4000  # 1 MB minus a bit: under the 1 MiB default
    ws.send_binary(payload)
    assert ws.recv_data()[1] == payload
    ws.send_close(1000, b"bye")
    assert expect_close(ws) == (1000, "")


def test_health(default_gateway) -> None:  # type: ignore[no-untyped-def]
    with urllib.request.urlopen("http://127.0.0.1:8080/healthz", timeout=5) as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "application/json"
        body = json.loads(r.read())
    assert body["status"] == "ok"
    assert isinstance(body["tunnels"], int)
