"""
C{tunnelgw workers --count N --config FILE [--logger OBSERVER]}: N gateway
processes (C{twistd -n tunnelgw}), one per core, sharing the
configuration's listeners (C{reuseport:} listeners: the kernel spreads new
connections over them), supervised by this one:

  - a worker that exits without being asked is started again (after 1 s,
    doubling while it keeps dying young, at most 60 s);
  - SIGHUP reloads every worker, SIGUSR1 drains every worker, SIGTERM (or
    SIGINT) stops every worker (each drains) and then this process, after
    C{gateway.drain_timeout} and a margin at most;
  - under systemd, this process is the service: it is ready once every
    worker is (each tells it on a socket of its own), and says so.

Each worker knows its index (C{TUNNELGW_WORKER}): worker I serves the
metrics on the metrics listener's port plus I; worker 0 alone serves the
admin listener.  Worker output goes where this process's goes; this
process logs as its workers do (C{--logger tunnelgw.logs.json_observer}:
JSON lines, else text).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import defer, protocol, task
from twisted.internet.error import ProcessExitedAlready
from twisted.python.failure import Failure

from tunnelgw.config.loader import load
from tunnelgw.config.values import ConfigError
from tunnelgw.logs import Logger
from tunnelgw.notify import notify

__all__ = ["Supervisor", "main", "shared_listeners"]

MIN_RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 60.0
YOUNG = 10.0
"""A worker that dies within this many seconds of its start is restarted later and later."""


def shared_listeners(config: Any) -> None:
    """
    @raise ConfigError: a listener several processes cannot share (each
        would try to bind it alone): only C{reuseport:} ones can be.
    """
    endpoints = [(f"gateway.listen[{i}]", d) for i, d in enumerate(config.listen)]
    endpoints += [
        (f"gateway.tls_listeners[{i}].endpoint", t.endpoint) for i, t in enumerate(config.tls_listeners)
    ]
    for key, description in endpoints:
        kind = description.split(":", 1)[0].strip().lower()
        if kind != "reuseport":
            raise ConfigError(f"{key}: workers share their listeners: use reuseport:PORT (not {kind}:)")


class _Worker(protocol.ProcessProtocol):
    def __init__(self, supervisor: Supervisor, index: int) -> None:
        self.supervisor = supervisor
        self.index = index

    def processEnded(self, reason: Failure) -> None:
        self.supervisor.ended(self.index, reason)


class Supervisor:
    log = Logger()

    def __init__(self, reactor: Any, count: int, argv: list[str], drain_timeout: float) -> None:
        self.reactor = reactor
        self.count = count
        self.argv = argv
        self.drain_timeout = drain_timeout
        self.workers: dict[int, Any] = {}
        self.started: dict[int, float] = {}
        self.delay = {i: MIN_RESTART_DELAY for i in range(count)}
        self.stopping = False
        self.draining = False
        self.ready: set[int] = set()
        self._stopped: defer.Deferred[None] = defer.Deferred()
        directory = tempfile.mkdtemp(prefix="tunnelgw-workers-")
        self.notify_path = str(Path(directory) / "notify")
        self._notified = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._notified.bind(self.notify_path)
        self._notified.setblocking(False)
        self._poll = task.LoopingCall(self._read_notifications)
        self._poll.clock = reactor

    def start(self) -> None:
        for index in range(self.count):
            self.spawn(index)
        self._poll.start(0.2)

    def spawn(self, index: int) -> None:
        if self.stopping:
            return
        env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
        env.update(TUNNELGW_WORKER=str(index), NOTIFY_SOCKET=self.notify_path)
        transport = self.reactor.spawnProcess(
            _Worker(self, index), self.argv[0], self.argv, env=env, childFDs={0: "w", 1: 1, 2: 2}
        )
        self.workers[index] = transport
        self.started[index] = self.reactor.seconds()
        self.log.info(
            "worker {index} started (pid {pid})",
            event="worker",
            index=index,
            pid=transport.pid,
            state="started",
        )

    def ended(self, index: int, reason: Failure) -> None:
        self.workers.pop(index, None)
        self.ready.discard(index)
        code, killed = getattr(reason.value, "exitCode", None), getattr(reason.value, "signal", None)
        status = f"signal {killed}" if killed else f"status {code}"
        if self.stopping:
            if not self.workers and not self._stopped.called:
                self._stopped.callback(None)
            return
        lived = self.reactor.seconds() - self.started.get(index, 0.0)
        delay = self.delay[index] if lived < YOUNG else MIN_RESTART_DELAY
        self.delay[index] = min(delay * 2, MAX_RESTART_DELAY)
        self.log.warn(
            "worker {index} exited ({status}); starting it again in {delay:g}s",
            event="worker",
            index=index,
            status=status,
            state="exited",
            delay=delay,
        )
        self.reactor.callLater(delay, self.spawn, index)

    def _read_notifications(self) -> None:
        while True:
            try:
                data, _ = self._notified.recvfrom(4096)
            except BlockingIOError:
                return
            fields = dict(
                line.split("=", 1) for line in data.decode("utf-8", "replace").splitlines() if "=" in line
            )
            index = fields.get("WORKER", "")
            if fields.get("READY") == "1" and index.isdigit() and int(index) not in self.ready:
                if self.draining:
                    self._signal(int(index), signal.SIGUSR1)  # started since the drain: drains too
                self.ready.add(int(index))
                self.log.info("worker {index} ready", event="worker", index=int(index), state="ready")
                if len(self.ready) >= self.count:
                    notify("READY=1", f"STATUS={self.count} workers serving")

    def signal_all(self, signum: int, ready_only: bool = True) -> None:
        """
        C{signum} to every worker; by default only to those that are ready
        (one still starting has no handler yet, and would die of SIGHUP; it
        reads the configuration as it is now anyway).
        """
        for index in list(self.workers):
            if ready_only and index not in self.ready:
                continue
            self._signal(index, signum)
            self.log.info(
                "worker {index}: {signal}", event="worker", index=index, signal=signal.Signals(signum).name
            )

    def reload(self) -> None:
        notify("RELOADING=1", "STATUS=reloading every worker")
        self.signal_all(signal.SIGHUP)
        notify("READY=1", f"STATUS={self.count} workers serving")

    def drain(self) -> None:
        self.draining = True
        self.signal_all(signal.SIGUSR1)

    def _signal(self, index: int, signum: int) -> None:
        transport = self.workers.get(index)
        if transport is not None:
            try:
                transport.signalProcess(signum)
            except ProcessExitedAlready:
                pass

    def stop(self) -> defer.Deferred[None]:
        """Stop every worker (each drains); those still there after the drain time and a margin are killed."""
        self.stopping = True
        notify("STOPPING=1", "STATUS=stopping the workers")
        if self._poll.running:
            self._poll.stop()
        self._close_socket()
        if not self.workers:
            return defer.succeed(None)
        self.signal_all(signal.SIGTERM, ready_only=False)

        def kill() -> None:
            for transport in list(self.workers.values()):
                try:
                    transport.signalProcess("KILL")
                except ProcessExitedAlready:
                    pass

        deadline = self.reactor.callLater(self.drain_timeout + 10, kill)
        return self._stopped.addBoth(lambda _: deadline.cancel() if deadline.active() else None)

    def _close_socket(self) -> None:
        """The workers' notification socket and its directory, gone."""
        self._notified.close()
        path = Path(self.notify_path)
        path.unlink(missing_ok=True)
        try:
            path.parent.rmdir()
        except OSError:
            pass


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tunnelgw workers")
    parser.add_argument("--count", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--config", required=True)
    parser.add_argument(
        "--logger", help="twistd's --logger for the workers, e.g. tunnelgw.logs.json_observer"
    )
    options = parser.parse_args(argv)
    if options.count < 1:
        parser.error("--count must be at least 1")
    try:
        config = load(options.config)
        shared_listeners(config)
    except ConfigError as e:
        sys.stderr.write(f"tunnelgw workers: {options.config}: {e}\n")
        return 1
    twistd = str(Path(sys.executable).parent / "twistd")
    args = [twistd, "-n", "--pidfile="]
    if options.logger:
        args += ["--logger", options.logger]
    args += ["tunnelgw", "--config", options.config]

    from twisted.logger import globalLogBeginner

    from tunnelgw.logs import json_observer, text_observer

    observer = json_observer() if options.logger == "tunnelgw.logs.json_observer" else text_observer()
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)

    def run(reactor: Any) -> defer.Deferred[None]:
        supervisor = Supervisor(reactor, options.count, args, config.drain_timeout)
        for signum, action in ((signal.SIGHUP, supervisor.reload), (signal.SIGUSR1, supervisor.drain)):

            def received(signum: int, frame: Any, action: Any = action) -> None:
                reactor.callFromThread(action)

            signal.signal(signum, received)
        done: defer.Deferred[None] = defer.Deferred()
        reactor.addSystemEventTrigger("before", "shutdown", lambda: supervisor.stop().addBoth(done.callback))
        supervisor.start()
        return done

    task.react(run)
    return 0
