"""
The client of the namespace tests, run inside the client's namespace:
python dmz_client.py MODE URL [USER:PASSWORD], printing one JSON line.

  status  the HTTP status of an upgrade (101, or the refusal's)
  pump    64 MiB each way through the tunnel; equal sha256 or not
  hold    one echo, print {"event": "ready"}, then wait for the close frame
          and print its code and the time it came (time.time())
  direct  python dmz_client.py direct HOST PORT SERVER_NAME CA ASSERTION [CERT KEY]:
          an upgrade straight to an inner gateway over TLS (with a client
          certificate when given); the HTTP status, or the TLS error
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
import threading
import time

import websocket

SIZE = 64 * 1024 * 1024
MESSAGE = 65536


def say(**event: object) -> None:
    print(json.dumps(event), flush=True)


def direct(host: str, port: int, server_name: str, ca: str, assertion: str, cert: list[str]) -> None:
    import http.client
    import ssl

    context = ssl.create_default_context(cafile=ca)
    if cert:
        context.load_cert_chain(cert[0], cert[1])
    try:
        sock = context.wrap_socket(
            __import__("socket").create_connection((host, port), timeout=10), server_hostname=server_name
        )
        conn = http.client.HTTPConnection(host, port, timeout=10)
        conn.sock = sock
        headers = {
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Protocol": "binary",
        }
        if assertion != "-":
            headers["Tunnelgw-Assertion"] = assertion
        conn.request("GET", "/app", headers=headers)
        say(status=conn.getresponse().status)
    except (OSError, ssl.SSLError) as e:
        say(tls_error=str(e))


def main() -> None:
    mode, url = sys.argv[1], sys.argv[2]
    if mode == "direct":
        direct(url, int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7:])
        return
    header = []
    if len(sys.argv) > 3:
        header.append("Authorization: Basic " + base64.b64encode(sys.argv[3].encode()).decode())
    try:
        ws = websocket.create_connection(
            url, subprotocols=["binary"], header=header, timeout=30, suppress_origin=True
        )
    except websocket.WebSocketBadStatusException as e:
        say(status=e.status_code)
        return
    if mode == "status":
        say(status=101)
        return
    if mode == "pump":
        data = os.urandom(SIZE)
        received = bytearray()

        def reader() -> None:
            while len(received) < SIZE:
                received.extend(ws.recv_data()[1])

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        for offset in range(0, SIZE, MESSAGE):
            ws.send_binary(data[offset : offset + MESSAGE])
        thread.join(120)
        say(equal=hashlib.sha256(received).digest() == hashlib.sha256(data).digest(), received=len(received))
        ws.close()
        return
    ws.send_binary(b"x" * 100)
    ws.recv()
    say(event="ready")
    ws.settimeout(10)
    while True:
        opcode, frame = ws.recv_data_frame(True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            code = int.from_bytes(frame.data[:2], "big") if len(frame.data) >= 2 else 1005
            say(event="closed", code=code, at=time.time())
            return


if __name__ == "__main__":
    main()
