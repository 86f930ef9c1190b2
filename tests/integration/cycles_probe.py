"""
Run by test_no_cycles.py in a process of its own: the gateway's site on
Twisted's real reactor, with real sockets to a real TCP echo backend;
WebSocket clients open and close tunnels through it, one after another.
Prints, as JSON, how many tunnels closed, what (of tunnelgw's, Twisted's
and autobahn's) the garbage collector found in cycles after them, how many
tunnel objects are still alive and how many timers are pending.
"""

from __future__ import annotations

import collections
import gc
import json
import sys
from typing import cast

from twisted.internet import defer, protocol, reactor
from twisted.internet.main import CONNECTION_DONE
from twisted.logger import ILogObserver, globalLogBeginner
from twisted.python.failure import Failure

from tests.integration.harness import raw_gateway_config
from tunnelgw.config.loader import loads
from tunnelgw.service import build_site
from tunnelgw.tunnel.deadlines import Deadlines, pending_on
from tunnelgw.tunnel.flow import release_connector
from tunnelgw.tunnel.relay import Tunnel

TUNNELS = 30
HEAD = (
    b"GET /raw HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Protocol: binary\r\n\r\n"
)
CLOSE = bytes([0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xE8 ^ 2])  # masked close, 1000

_DONE = Failure(CONNECTION_DONE)


class Echo(protocol.Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)

    def readConnectionLost(self) -> None:
        self.transport.loseConnection()


class Client(protocol.Protocol):
    def __init__(self, done: defer.Deferred[bytes]) -> None:
        self.done = done
        self.received = b""

    def connectionMade(self) -> None:
        self.transport.write(HEAD)

    def dataReceived(self, data: bytes) -> None:
        first = not self.received
        self.received += data
        if first and self.received.startswith(b"HTTP/1.1 101 "):
            self.transport.write(CLOSE)

    def connectionLost(self, reason: Failure = _DONE) -> None:
        release_connector(self.transport)  # this client's own connection: not the gateway's to count
        self.done.callback(self.received)


class ClientFactory(protocol.ClientFactory):
    def __init__(self, done: defer.Deferred[bytes]) -> None:
        self.done = done

    def buildProtocol(self, addr: object) -> Client:
        return Client(self.done)


@defer.inlineCallbacks
def main():  # type: ignore[no-untyped-def]
    echo = reactor.listenTCP(0, protocol.Factory.forProtocol(Echo), interface="127.0.0.1")
    config = loads(raw_gateway_config("tcp:0", echo.getHost().port))
    site = build_site(config, reactor)
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    closed = 0

    def one() -> defer.Deferred[bytes]:
        done: defer.Deferred[bytes] = defer.Deferred()
        reactor.connectTCP("127.0.0.1", port.getHost().port, ClientFactory(done))
        return done

    yield one()  # warm up: modules, caches
    for _ in range(3):
        yield defer.succeed(None)
    gc.collect()
    before = {id(o) for o in gc.get_objects()}
    gc.set_debug(gc.DEBUG_SAVEALL)
    for _ in range(TUNNELS):
        answer = yield one()
        assert isinstance(answer, bytes) and answer.startswith(b"HTTP/1.1 101 "), answer
        closed += 1
    while len(site.registry):  # every tunnel over, its backend closed
        wait: defer.Deferred[None] = defer.Deferred()
        reactor.callLater(0.01, wait.callback, None)
        yield wait
    wait = defer.Deferred()
    reactor.callLater(0.05, wait.callback, None)
    yield wait
    gc.collect()
    ours = collections.Counter(
        f"{type(o).__module__}.{type(o).__qualname__}"
        for o in gc.garbage
        if id(o) not in before and type(o).__module__.startswith(("tunnelgw", "twisted", "autobahn", "txaio"))
    )
    gc.set_debug(0)
    gc.garbage.clear()
    gc.collect()
    alive = sum(isinstance(o, Tunnel) for o in gc.get_objects())
    # armed timers: in the shared queues, or in the reactor (the site's
    # clock for its date header and this probe's own deadline aside)
    ignored: tuple[object, ...] = (site, reactor)
    timers = pending_on(reactor) + sum(
        getattr(c.func, "__self__", None) not in ignored
        and not isinstance(getattr(c.func, "__self__", None), Deadlines)  # the shared queues' own timers
        for c in reactor.getDelayedCalls()
    )
    print(json.dumps({"tunnels": closed, "garbage": dict(ours), "tunnels_alive": alive, "timers": timers}))


def run() -> None:
    # as twistd does: events go to an observer (here none) and are not
    # kept in twisted.logger's start-up buffer, which holds their sources
    globalLogBeginner.beginLoggingTo([cast(ILogObserver, lambda event: None)], redirectStandardIO=False)
    failure: list[object] = []
    d = main()
    d.addErrback(lambda f: failure.append(f.getTraceback()))
    d.addBoth(lambda _: reactor.stop())
    reactor.callLater(50, reactor.stop)
    reactor.run()
    if failure:
        print(failure[0], file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    run()
