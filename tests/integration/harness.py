"""
Real processes and sockets for integration tests: the gateway under
twistd (as operators run it), TCP backends, and WebSocket helpers.

Every wait here is bounded; a helper that times out raises.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import websocket

from tunnelgw.testing import public_realm

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]


PUBLIC_REALM = "\n" + public_realm()
"""A realm that admits everyone (C{realm = "public"}), as TOML."""


def raw_gateway_config(listen: str, upstream_port: int, extra: str = "", gateway: str = "") -> str:
    """
    A gateway's configuration (TOML) with one C{raw} service at C{/raw}
    (subprotocol C{binary}, no Origin needed) in an anonymous realm, its
    backend on 127.0.0.1:C{upstream_port}; C{extra} lines go into the
    service's table, C{gateway} lines into C{[gateway]}.
    """
    return f"""
[gateway]
listen = ["{listen}"]
{gateway}
{PUBLIC_REALM}
[services.raw]
path = "/raw"
adapter = "raw"
realm = "public"
upstream = "tcp:127.0.0.1:{upstream_port}"
subprotocols = ["binary"]
allow_missing_origin = true
{extra}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def json_lines(path: Path) -> list[dict[str, Any]]:
    """
    The JSON log lines of a file (what the JSON observer writes); lines
    that are not JSON (a traceback twistd wrote before logging started)
    are skipped.
    """
    events = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                events.append(event)
    return events


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Gateway:
    """
    C{twistd -n tunnelgw --config FILE} with JSON logs in a file.
    """

    def __init__(self, workdir: Path, config: str, port: int, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.env = env
        self.port = port
        self.config_path = workdir / "tunnelgw.toml"
        self.config_path.write_text(config)
        self.log_path = workdir / "gateway.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.twistd = [str(BIN / "twistd")]

    def start(self, timeout: float = 20.0) -> Gateway:
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [
                *self.twistd,
                "-n",
                "--pidfile=",
                "--logger",
                "tunnelgw.logs.json_observer",
                "tunnelgw",
                "--config",
                str(self.config_path),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            env=None if self.env is None else {**os.environ, **self.env},
        )
        log.close()

        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.output()}")
            return port_open(self.port) if self.port else True  # port 0: it listens on nothing

        wait_for(ready, timeout, "the gateway to listen")
        return self

    def output(self) -> str:
        return self.log_path.read_bytes().decode("utf-8", "replace")

    def events(self) -> list[dict[str, Any]]:
        return json_lines(self.log_path)

    def wait_event(self, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
        """
        The first log event with these fields (a callable value: a field
        for which it answers true).
        """

        def matches(event: dict[str, Any], key: str, value: Any) -> bool:
            return bool(value(event.get(key))) if callable(value) else event.get(key) == value

        def find() -> dict[str, Any] | None:
            for event in self.events():
                if all(matches(event, k, v) for k, v in fields.items()):
                    return event
            return None

        result: dict[str, Any] = wait_for(find, timeout, f"a log event with {fields}")
        return result

    def url(self, path: str, scheme: str = "ws") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class EchoServer:
    """
    A threaded TCP echo server on 127.0.0.1.  With C{stall}, each connection
    stops reading for C{stall} seconds once it has echoed C{stall_after}
    bytes.
    """

    def __init__(self, stall_after: int = 0, stall: float = 0.0) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.stall_after = stall_after
        self.stall = stall
        self.connections: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(conn)
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        echoed, stalled = 0, False
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                conn.sendall(data)
                echoed += len(data)
                if self.stall and not stalled and echoed >= self.stall_after:
                    stalled = True
                    time.sleep(self.stall)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.sock.close()
        for conn in self.connections:
            try:
                conn.close()
            except OSError:
                pass


def ws_connect(url: str, **options: Any) -> websocket.WebSocket:
    options.setdefault("timeout", 10)
    if "origin" not in options:
        options.setdefault("suppress_origin", True)
    return websocket.create_connection(url, **options)


def handshake_status(
    url: str,
    origin: str | None = None,
    subprotocols: list[str] | None = None,
    timeout: float = 10.0,
    headers: dict[str, str] | None = None,
) -> tuple[int, str]:
    """
    Send an upgrade request with http.client; return the status and body
    (a refusal), or 101 and "" (accepted; the connection is dropped).
    The last response's headers are kept in C{handshake_status.headers}.
    """
    parsed = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=timeout)
    extra = headers or {}
    headers = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "Sec-WebSocket-Version": "13",
    }
    if origin is not None:
        headers["Origin"] = origin
    if subprotocols:
        headers["Sec-WebSocket-Protocol"] = ", ".join(subprotocols)
    headers.update(extra)
    try:
        conn.request("GET", parsed.path, headers=headers)
        response = conn.getresponse()
        handshake_status.headers = response.headers  # type: ignore[attr-defined]
        if response.status == 101:
            return 101, ""
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        conn.close()


def expect_close(ws: websocket.WebSocket, timeout: float = 10.0) -> tuple[int, str]:
    """
    Read until the server's close frame; return its code and reason.
    """
    ws.settimeout(timeout)
    while True:
        opcode, frame = ws.recv_data_frame(True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            data = frame.data
            code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005
            return code, data[2:].decode("utf-8", "replace")


def raw_upgrade(port: int, path: str, extra: str = "", timeout: float = 10.0) -> socket.socket:
    """
    A hand-made upgrade on a plain socket, for frames no client library
    will send.  Returns the socket after a 101.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            raise ConnectionError(f"closed during handshake: {head!r}")
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def read_close_frame(sock: socket.socket) -> int:
    """
    Read server frames from C{sock} until a close frame; return its code.
    """
    buf = io.BytesIO()

    def need(n: int) -> bytes:
        while len(buf.getvalue()) < n:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed before a close frame")
            buf.seek(0, os.SEEK_END)
            buf.write(chunk)
        data = buf.getvalue()
        buf.seek(0)
        buf.truncate()
        buf.write(data[n:])
        return data[:n]

    while True:
        b0, b1 = need(2)
        length = b1 & 0x7F
        if length == 126:
            length = struct.unpack("!H", need(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", need(8))[0]
        payload = need(length)
        if b0 & 0x0F == 0x8:
            return int(struct.unpack("!H", payload[:2])[0]) if len(payload) >= 2 else 1005


class TcpTap:
    """
    A threaded TCP proxy on 127.0.0.1 in front of C{target_port} that keeps
    every byte its clients sent (C{sent}: one C{bytearray} per connection),
    to check what a backend really received.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.sent: list[bytearray] = []
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        self._relay(conn)

    def _relay(self, conn: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
        upstream.settimeout(None)
        record = bytearray()
        self.sent.append(record)
        self._sockets += [conn, upstream]
        threading.Thread(target=self._pump, args=(upstream, conn, None), daemon=True).start()
        self._pump(conn, upstream, record)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, record: bytearray | None) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    sink.shutdown(socket.SHUT_WR)
                    return
                if record is not None:
                    record += data
                sink.sendall(data)
        except OSError:
            for s in (source, sink):
                try:
                    s.close()
                except OSError:
                    pass

    def received(self) -> bytes:
        """
        Everything the target was sent, over all connections.
        """
        return b"".join(bytes(r) for r in self.sent)

    def close(self) -> None:
        self.sock.close()
        for s in self._sockets:
            try:
                s.close()
            except OSError:
                pass


def pump(ws, data: bytes, message: int, stall_after: int = 0, stall: float = 0.0) -> bytes:  # type: ignore[no-untyped-def]
    """
    Send C{data} in C{message}-sized binary messages from one thread while
    another reads the echo, pausing C{stall} seconds after C{stall_after}
    bytes.  Returns what was read.
    """
    received = bytearray()
    errors: list[BaseException] = []

    def reader() -> None:
        stalled = False
        try:
            while len(received) < len(data):
                received.extend(ws.recv_data()[1])
                if stall and not stalled and len(received) >= stall_after:
                    stalled = True
                    time.sleep(stall)  # a deliberately stalled reader, not a wait
        except BaseException as e:  # reported below
            errors.append(e)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    view = memoryview(data)
    for offset in range(0, len(data), message):
        ws.send_binary(view[offset : offset + message].tobytes())
    thread.join(120)
    assert not thread.is_alive(), "reader did not finish within 120s"
    assert not errors, errors
    return bytes(received)


class TlsFront(TcpTap):
    """
    A threaded TLS server on 127.0.0.1 (the given certificate) in front of
    a plain TCP C{target_port}: a real server reached over TLS, as a
    gateway's C{tls:} upstream sees it.  C{handshakes} counts the TLS
    handshakes that succeeded.
    """

    def __init__(self, target_port: int, cert: Path, key: Path) -> None:
        import ssl

        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(str(cert), str(key))
        self.handshakes = 0
        super().__init__(target_port)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        try:
            tls = self.context.wrap_socket(conn, server_side=True)
        except OSError:
            conn.close()
            return
        self.handshakes += 1
        tls.settimeout(None)
        self._relay(tls)


class JsonHTTPServer:
    """
    A threaded HTTP server on 127.0.0.1 answering every POST with the JSON
    that C{answer(body, headers)} returns (a decision point, an
    introspection endpoint).  Errors of a client that went away are quiet.
    """

    def __init__(self, answer: Callable[[bytes, Any], Any]) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's hook)
                request = self.rfile.read(int(self.headers["Content-Length"]))
                body = json.dumps(answer(request, self.headers)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that gave up on a slow answer

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
