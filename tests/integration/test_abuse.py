"""
Abuse a real gateway as an attacker would, and assert its bounds: memory
stays flat under a ping flood from a client that never reads; another
client's round trips stay fast while one client sends a message in a
million fragments.
"""

from __future__ import annotations

import json
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.integration.harness import EchoServer, Gateway, raw_gateway_config, raw_upgrade, ws_connect
from tunnelgw.testing import client_frame

FLOOD_SECONDS = 20.0


def rss_kib(gateway: Gateway) -> int:
    assert gateway.proc is not None
    for line in Path(f"/proc/{gateway.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def send_for(sock: socket.socket, chunk: bytes, seconds: float) -> int:
    """
    Send C{chunk} over and over for C{seconds}, as fast as the gateway
    reads it, never reading; return the bytes sent.
    """
    sock.setblocking(False)
    sent = 0
    view = memoryview(b"")
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if not view:
            view = memoryview(chunk)
        _, writable, _ = select.select([], [sock], [], min(left, 0.1))
        if not writable:
            continue
        try:
            n = sock.send(view)
        except BlockingIOError:
            continue
        sent += n
        view = view[n:]
    return sent


def test_a_ping_flood_from_a_client_that_never_reads_stays_bounded(start_gateway) -> None:  # type: ignore[no-untyped-def]
    """
    Finding: every ping was answered into the write buffer of a client
    that never read its pongs (60 -> 159 MiB in 20 s).  A client whose
    buffer is over the mark is not read any more, so the gateway's memory
    stays flat and the client's sending stalls.
    """
    backend = EchoServer()
    try:
        gateway = start_gateway(raw_gateway_config("tcp:{port}:interface=127.0.0.1", backend.port))
        # warm up: one tunnel relays, so that what a first tunnel allocates
        # once is not counted as growth
        ws = ws_connect(gateway.url("/raw"), subprotocols=["binary"])
        ws.send_binary(b"warm")
        assert ws.recv_data()[1] == b"warm"
        ws.close()
        sock = raw_upgrade(gateway.port, "/raw", "Sec-WebSocket-Protocol: binary\r\n")
        before = rss_kib(gateway)
        ping = client_frame(0x9, b"p" * 125)
        sent = send_for(sock, ping * 512, FLOOD_SECONDS)
        growth = rss_kib(gateway) - before
        assert growth < 4 * 1024, f"RSS grew by {growth} KiB under {sent} bytes of pings"
        # the gateway stopped reading: far less went in than a loopback
        # carries in 20 s (gigabytes)
        assert sent < 64 * 1024 * 1024, sent
        # and it still serves others
        other = ws_connect(gateway.url("/raw"), subprotocols=["binary"])
        other.send_binary(b"still here")
        assert other.recv_data()[1] == b"still here"
        other.close()
        sock.close()
    finally:
        backend.close()


def upgrade_request(port: int, path: str, authorization: str | None) -> bytes:
    auth = f"Authorization: {authorization}\r\n" if authorization else ""
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{auth}\r\n"
    ).encode()


def status_of(port: int, request: bytes, source: str = "127.0.0.1", timeout: float = 10.0) -> int:
    """
    Send one upgrade request from C{source}; the response's status.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0)) as sock:
        sock.sendall(request)
        head = b""
        while b"\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"closed before a status line: {head!r}")
            head += chunk
        return int(head.split(b" ", 2)[1])


def basic(user: str, password: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


PASSWORD_REALM = """
[gateway]
listen = ["tcp:{{port}}:interface=127.0.0.1"]

[realms.staff]
[[realms.staff.modules]]
module = "password_file"
flag = "required"
options = {{ path = "{users}" }}

[services.echo]
path = "/echo"
adapter = "echo"
realm = "staff"
allow_no_subprotocol = true
allow_missing_origin = true
"""


def hammer(
    port: int, request: bytes, sources: list[str], seconds: float, work: Path
) -> subprocess.Popen[bytes]:
    """
    Start the flood of C{tests/peers/login_flood.py}: one connection per
    source address, each sending C{request} over and over for C{seconds}.
    Its own process, so that it does not take the measuring interpreter.
    """
    request_file = work / "flood-request"
    request_file.write_bytes(request)
    script = Path(__file__).resolve().parents[1] / "peers" / "login_flood.py"
    args = [sys.executable, str(script), str(port), str(seconds), str(request_file), *sources]
    return subprocess.Popen(args, stdout=subprocess.PIPE)


def flood_result(flood: subprocess.Popen[bytes], seconds: float) -> dict[int, int]:
    out, _ = flood.communicate(timeout=seconds + 30)
    assert flood.returncode == 0
    return {int(k): v for k, v in json.loads(out).items()}


def test_a_good_login_gets_through_200_connections_of_wrong_passwords(start_gateway, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """
    Finding: 40 connections of wrong passwords grew the gateway from 81 to
    721 MiB (every argon2 check queued, at 64 MiB each) and a good login
    took 4.3 s; with 200 none got through.  Now: failures are throttled
    by address (429, no hash computed), verifications run two at a time,
    and a good user from another address logs in within a second.
    """
    from argon2 import PasswordHasher

    users = tmp_path / "users"
    # argon2-cffi's defaults, the costliest hashes the gateway admits
    users.write_text(f"alice:{PasswordHasher().hash('alicepw')}\n")
    gateway = start_gateway(PASSWORD_REALM.format(users=users))
    good = upgrade_request(gateway.port, "/echo", basic("alice", "alicepw"))
    bad = upgrade_request(gateway.port, "/echo", basic("alice", "wrong"))
    assert status_of(gateway.port, good) == 101
    before = rss_kib(gateway)
    until = time.monotonic() + 10
    flood = hammer(gateway.port, bad, ["127.0.0.2"] * 200, 10, tmp_path)
    latencies = []
    time.sleep(1.0)  # let the flood build up (a pause in the client, not a wait on the gateway)
    while time.monotonic() < until - 1:
        started = time.monotonic()
        assert status_of(gateway.port, good) == 101
        latencies.append(time.monotonic() - started)
        time.sleep(0.5)  # a user's pace, not a wait on the gateway
    peak = rss_kib(gateway)
    result = flood_result(flood, 10)
    assert max(latencies) < 1.0, latencies
    assert result.get(429, 0) > 100 and result.get(401, 0) <= 20, result
    assert peak - before < 160 * 1024, f"RSS grew by {peak - before} KiB"
    throttled = gateway.wait_event(event="login_throttled", peer="127.0.0.2")
    assert throttled["kind"] in ("address", "user")


def test_a_login_flood_from_many_addresses_is_bounded(start_gateway, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """
    200 addresses, each with its own wrong guesses (under the per-address
    limit): the hashes are verified two at a time, the logins that would
    queue beyond max_pending are refused with 503, and memory stays within
    two verifications' worth.
    """
    from argon2 import PasswordHasher

    users = tmp_path / "users"
    users.write_text(f"alice:{PasswordHasher().hash('alicepw')}\n")
    gateway = start_gateway(
        PASSWORD_REALM.format(users=users).replace(
            "[realms.staff]",
            "[gateway.logins]\nmax_pending = 16\nmax_failures_per_user = 100000\n\n[realms.staff]",
        )
    )
    assert status_of(gateway.port, upgrade_request(gateway.port, "/echo", basic("alice", "alicepw"))) == 101
    before = rss_kib(gateway)
    bad = upgrade_request(gateway.port, "/echo", basic("alice", "wrong"))
    result = flood_result(
        hammer(gateway.port, bad, [f"127.0.1.{i}" for i in range(1, 201)], 10, tmp_path), 10
    )
    growth = rss_kib(gateway) - before
    assert result.get(503, 0) > 0 and result.get(401, 0) > 0, result
    assert result.get(0, 0) == 0, result  # every request answered
    assert growth < 160 * 1024, f"RSS grew by {growth} KiB"
    busy = gateway.wait_event(event="login_busy")
    assert busy["pending"] == 16


def test_a_message_in_a_million_fragments_does_not_stall_others(start_gateway) -> None:  # type: ignore[no-untyped-def]
    """
    Finding: one message in a million 1-byte frames took 17.6 s of the
    gateway's CPU and pushed other clients' round trips from 3 ms to
    600 ms.  Now the 1025th frame closes it with 1009 and nothing more is
    parsed; an attacker that reconnects and starts over, for 5 s, leaves
    another client's round trips fast.
    """
    import statistics
    import threading

    from tests.integration.harness import read_close_frame

    backend = EchoServer()
    try:
        gateway = start_gateway(raw_gateway_config("tcp:{port}:interface=127.0.0.1", backend.port))
        codes: list[int] = []
        until = time.monotonic() + 5

        def attack() -> None:
            first = client_frame(0x2, b"x", fin=False)
            more = client_frame(0x0, b"x", fin=False) * 10_000  # 70 KB of 1-byte frames
            while time.monotonic() < until:
                sock = raw_upgrade(gateway.port, "/raw", "Sec-WebSocket-Protocol: binary\r\n")
                try:
                    sock.sendall(first)
                    for _ in range(100):  # a million frames, unless the gateway closes first
                        sock.sendall(more)
                except OSError:
                    pass
                try:
                    sock.settimeout(5)
                    codes.append(read_close_frame(sock))
                except OSError:
                    codes.append(0)
                sock.close()

        ws = ws_connect(gateway.url("/raw"), subprotocols=["binary"])
        thread = threading.Thread(target=attack, daemon=True)
        thread.start()
        rtts = []
        while time.monotonic() < until:
            started = time.monotonic()
            ws.send_binary(b"ping")
            assert ws.recv_data()[1] == b"ping"
            rtts.append(time.monotonic() - started)
        thread.join(30)
        assert not thread.is_alive()
        ws.close()
        assert codes and set(codes) == {1009}, codes
        p50 = statistics.median(rtts)
        assert p50 < 0.05, f"round trip p50 {p50 * 1000:.1f} ms while under attack"
    finally:
        backend.close()
