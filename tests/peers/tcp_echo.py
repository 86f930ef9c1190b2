"""
A threaded TCP echo server (the backend of the namespace tests):
python tcp_echo.py HOST PORT; prints "ready" once listening.
"""

from __future__ import annotations

import socket
import sys
import threading


def echo(conn: socket.socket) -> None:
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)


def main() -> None:
    server = socket.create_server((sys.argv[1], int(sys.argv[2])), backlog=64)
    print("ready", flush=True)
    while True:
        conn, _ = server.accept()
        threading.Thread(target=echo, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
