"""
tunnelgw.reactor: epoll events without a legacy logging context, and with
the error handling of Twisted's own epoll reactor.

Each test builds its own GatewayReactor (never installed, never run) and
polls it once with a zero timeout on a socket pair whose data is already
there.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from twisted.internet.abstract import FileDescriptor
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.python import context, failure, log
from zope.interface import provider

from tunnelgw.reactor import GatewayReactor


class Reader(FileDescriptor):
    """
    One end of a socket pair, read by the reactor under test.
    """

    def __init__(self, reactor: Any, sock: socket.socket, read: Any = None, lost: Any = None) -> None:
        super().__init__(reactor)
        self.sock = sock
        self.read = read
        self.lost = lost
        self.systems: list[str] = []
        self.reasons: list[failure.Failure] = []

    def fileno(self) -> int:
        return self.sock.fileno()

    def logPrefix(self) -> str:
        return "Reader,7"

    def doRead(self) -> Any:
        self.systems.append(context.get(log.ILogContext)["system"])
        self.sock.recv(100)
        return self.read() if self.read else None

    def connectionLost(self, reason: failure.Failure) -> None:
        self.reasons.append(reason)
        if self.lost:
            self.lost()


@pytest.fixture
def reactor() -> Iterator[GatewayReactor]:
    r = GatewayReactor()
    yield r
    r._poller.close()  # drops every registration (the sockets may be closed already)
    r.waker.connectionLost(None)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def logged() -> Iterator[list[LogEvent]]:
    events: list[LogEvent] = []

    @provider(ILogObserver)
    def observe(event: LogEvent) -> None:
        events.append(event)

    globalLogPublisher.addObserver(observe)
    yield events
    globalLogPublisher.removeObserver(observe)


def failure_of(event: LogEvent) -> failure.Failure | None:
    """
    The failure an event logged (log.err's events arrive in legacy form).
    """
    found: failure.Failure | None = event.get("log_failure") or event.get("failure")
    return found


def test_an_event_runs_without_a_logging_context(reactor: GatewayReactor, pair: Any) -> None:
    a, b = pair
    reader = Reader(reactor, a)
    reactor.addReader(reader)
    b.send(b"x")
    reactor.doPoll(0)
    # Twisted's epoll reactor would have pushed the reader's prefix
    assert reader.systems == ["-"]
    assert reader.reasons == []


def test_a_failing_read_loses_the_connection_as_twisted_does(
    reactor: GatewayReactor, pair: Any, logged: list[LogEvent]
) -> None:
    a, b = pair

    def boom() -> None:
        raise ValueError("protocol bug")

    reader = Reader(reactor, a, read=boom)
    reactor.addReader(reader)
    b.send(b"x")
    reactor.doPoll(0)
    (reason,) = reader.reasons
    assert reason.check(ValueError)
    assert reader not in reactor.getReaders()
    assert [failure_of(e).value for e in logged if failure_of(e)] == [reason.value]


def test_an_exception_escaping_the_event_is_logged_with_the_prefix(
    reactor: GatewayReactor, pair: Any, logged: list[LogEvent]
) -> None:
    a, b = pair

    def closed() -> Any:
        from twisted.internet.main import CONNECTION_DONE

        return CONNECTION_DONE

    def lost_badly() -> None:
        raise RuntimeError("connectionLost bug")

    reader = Reader(reactor, a, read=closed, lost=lost_badly)
    reactor.addReader(reader)
    b.send(b"x")
    reactor.doPoll(0)  # does not raise: logged, as callWithLogger logs it
    escaped = [e for e in logged if failure_of(e) and failure_of(e).check(RuntimeError)]
    assert [e.get("log_system", e.get("system")) for e in escaped] == ["Reader,7"]


def test_keyboard_interrupt_still_stops_the_reactor(reactor: GatewayReactor, pair: Any) -> None:
    a, b = pair

    def closed() -> Any:
        from twisted.internet.main import CONNECTION_DONE

        return CONNECTION_DONE

    def interrupted() -> None:
        raise KeyboardInterrupt

    reactor.addReader(Reader(reactor, a, read=closed, lost=interrupted))
    b.send(b"x")
    with pytest.raises(KeyboardInterrupt):
        reactor.doPoll(0)


def test_a_descriptor_removed_by_an_earlier_event_of_the_same_poll_is_skipped(
    reactor: GatewayReactor, logged: list[LogEvent]
) -> None:
    (a1, b1), (a2, b2) = socket.socketpair(), socket.socketpair()
    try:
        # both are ready in the same poll, and whichever runs first removes
        # the other: exactly one runs, whatever epoll's order
        readers: list[Reader] = []
        for a in (a1, a2):
            readers.append(Reader(reactor, a, read=lambda: [reactor.removeReader(r) for r in readers]))
            reactor.addReader(readers[-1])
        b1.send(b"x")
        b2.send(b"x")
        reactor.doPoll(0)
        assert sorted(len(r.systems) for r in readers) == [0, 1]
        assert not [e for e in logged if failure_of(e)]
    finally:
        for s in (a1, b1, a2, b2):
            s.close()
