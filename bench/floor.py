"""
The floors under tunnelgw's handshake rate: what the libraries it is built
on do alone, on the same backend and load, with no admission, no
authentication, no logging and no limits.

    python bench/floor.py autobahn PORT BACKEND_PORT
    python bench/floor.py twisted PORT BACKEND_PORT
    python bench/floor.py proxy PORT BACKEND_PORT [CERT KEY]

C{autobahn}: an autobahn WebSocket server with tunnelgw's hardened options
(and its lazy debug arguments) that connects the backend in C{onConnect},
before its 101, and relays binary messages to it and back.

C{twisted}: a bare Twisted server that reads a request head, connects the
backend, answers a canned 101 and, on the client's close frame, answers
one and closes both connections: the TCP work of a handshake and nothing
else (not a WebSocket implementation; a reference point only).

C{proxy}: Twisted's own TCP proxy (C{twisted.protocols.portforward}),
over TLS with CERT and KEY: the floor under a tunnel's bytes, which
carries no WebSocket at all.

Prints "ready" once listening.
"""

from __future__ import annotations

import base64
import hashlib
import sys
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import endpoints, protocol, reactor

import tunnelgw.websocket.server  # noqa: F401  (autobahn's debug arguments made lazy, as in tunnelgw)

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Backend(protocol.Protocol):
    transport: Any  # connected: a TCP connection
    client: Any = None

    def dataReceived(self, data: bytes) -> None:
        if self.client is not None:
            self.client.backend_data(data)


class BackendFactory(protocol.Factory):
    noisy = False
    protocol = Backend


def connect_backend(port: int) -> Any:
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=10)
    return endpoint.connect(BackendFactory())


class AutobahnFloor(WebSocketServerProtocol):  # type: ignore[misc]
    backend: Backend | None = None
    backend_port = 0

    def onConnect(self, request: Any) -> Any:
        def connected(backend: Backend) -> Any:
            self.backend, backend.client = backend, self
            return request.protocols[0] if request.protocols else None

        return connect_backend(self.backend_port).addCallback(connected)

    def onMessage(self, payload: bytes, is_binary: bool) -> None:
        if self.backend is not None:
            self.backend.transport.write(payload)

    def backend_data(self, data: bytes) -> None:
        self.sendMessage(data, isBinary=True)

    def onClose(self, was_clean: bool, code: int | None, reason: str | None) -> None:
        if self.backend is not None:
            self.backend.client = None
            self.backend.transport.loseConnection()
            self.backend = None


class TwistedFloor(protocol.Protocol):
    transport: Any  # connected: a TCP connection
    backend_port = 0

    def connectionMade(self) -> None:
        self.buffer = b""
        self.backend: Backend | None = None
        self.open = False

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        if self.open:
            if self.buffer[:1] == b"\x88":  # the client's close frame
                self.transport.write(b"\x88\x02\x03\xe8")
                self.transport.loseConnection()
            return
        if b"\r\n\r\n" not in self.buffer:
            return
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        key = b""
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-key":
                key = value.strip()
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        self.open = True

        def connected(backend: Backend) -> None:
            self.backend = backend
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Protocol: binary\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )

        connect_backend(self.backend_port).addCallback(connected)

    def backend_data(self, data: bytes) -> None:
        pass

    def connectionLost(self, reason: Any = None) -> None:
        if self.backend is not None:
            self.backend.transport.loseConnection()


def main(kind: str, port: int, backend_port: int, tls: tuple[str, str] | None = None) -> None:
    factory: Any
    if kind == "proxy":
        from twisted.protocols.portforward import ProxyFactory

        factory = ProxyFactory("127.0.0.1", backend_port)
        factory.noisy = False
        description = f"tcp:{port}:interface=127.0.0.1:backlog=4096"
        if tls is not None:
            description = f"ssl:{port}:interface=127.0.0.1:backlog=4096:certKey={tls[0]}:privateKey={tls[1]}"
        endpoints.serverFromString(reactor, description).listen(factory)
        print("ready", flush=True)
        reactor.run()  # type: ignore[attr-defined]
        return
    if kind == "autobahn":
        AutobahnFloor.backend_port = backend_port
        factory = WebSocketServerFactory(reactor=reactor)
        factory.setProtocolOptions(
            versions=[13],
            utf8validateIncoming=True,
            requireMaskedClientFrames=True,
            maskServerFrames=False,
            openHandshakeTimeout=6,
            closeHandshakeTimeout=6,
            tcpNoDelay=True,
            perMessageCompressionAccept=lambda offers: None,
        )
        factory.protocol = AutobahnFloor
    else:
        TwistedFloor.backend_port = backend_port
        factory = protocol.Factory.forProtocol(TwistedFloor)
    factory.noisy = False
    reactor.listenTCP(port, factory, backlog=4096, interface="127.0.0.1")  # type: ignore[attr-defined]
    print("ready", flush=True)
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(
        sys.argv[1],
        int(sys.argv[2]),
        int(sys.argv[3]),
        (sys.argv[4], sys.argv[5]) if len(sys.argv) > 5 else None,
    )
