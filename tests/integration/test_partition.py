"""
An instance cut off from Redis while another revokes a user: back on
Redis, it reads the revocation issued meanwhile, ends the user's tunnel
it still carried, and refuses the user, before it admits anyone again.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Gateway, expect_close, free_port, handshake_status, wait_for, ws_connect
from tests.integration.redis_server import Redis
from tests.integration.test_cluster import Setup, basic, config, write_users


class Cuttable:
    """A TCP relay to C{target} that can be cut (every connection closed, none accepted) and restored."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self.pairs.append((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        assert self.listener is not None
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the thread in accept(), which frees the port
        except OSError:
            pass
        self.listener.close()
        for pair in self.pairs:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
        self.pairs = []


@pytest.fixture()
def parts(tmp_path: Path) -> Iterator[tuple[Setup, Cuttable]]:
    redis = Redis(tmp_path / "redis").start()
    relay = Cuttable(redis.port)
    users = write_users(tmp_path / "users")
    gateways: list[Gateway] = []
    admin_ports: list[int] = []
    try:
        for name in ("a", "b"):
            port, admin_port = free_port(), free_port()
            directory = tmp_path / name
            directory.mkdir()
            text = config(port, admin_port, users, redis, name)
            if name == "b":  # b reaches Redis through the relay
                text = text.replace(f"127.0.0.1:{redis.port}", f"127.0.0.1:{relay.port}")
            gateways.append(Gateway(directory, text, port).start())
            admin_ports.append(admin_port)
            gateways[-1].wait_event(event="cluster", state="up")
        yield Setup(redis, gateways, admin_ports), relay
    finally:
        for gateway in gateways:
            gateway.stop()
        relay.cut()
        redis.stop()


def test_back_on_redis_an_instance_catches_up_before_admitting(parts: tuple[Setup, Cuttable]) -> None:
    setup, relay = parts
    on_b = ws_connect(
        setup.gateways[1].url("/echo"), subprotocols=["echo"], header=[f"Authorization: {basic('alice')}"]
    )
    on_b.send_binary(b"hi")
    assert on_b.recv() == b"hi"
    relay.cut()
    setup.gateways[1].wait_event(event="cluster", state="down")
    status, _ = setup.api(0, "POST", "/api/revocations", {"kind": "user", "value": "alice", "seconds": 600})
    assert status == 201
    # b did not hear of it: alice's tunnel there goes on
    on_b.send_binary(b"still")
    assert on_b.recv() == b"still"
    relay.restore()
    # back on Redis: the revocation read, the tunnel ended, alice refused
    assert expect_close(on_b, 15) == (1008, "revoked")
    url = setup.gateways[1].url("/echo")
    assert handshake_status(url, subprotocols=["echo"], headers={"Authorization": basic("alice")})[0] == 403
    wait_for(
        lambda: (
            handshake_status(url, subprotocols=["echo"], headers={"Authorization": basic("bob")})[0] == 101
        ),
        10,
        "b admitting again",
    )
