"""
The gateway's reactor: Twisted's epoll reactor, less a logging context
around every I/O event.

Twisted's C{EPollReactor.doPoll} hands each ready descriptor to
C{twisted.python.log.callWithLogger}, which asks the selectable for its
C{logPrefix()}, copies the legacy logging context twice and pushes it, so
that a legacy C{log.msg} made during that event carries the connection's
prefix as its C{system}.  A WebSocket handshake is half a dozen I/O events
(the accept, the request, the backend's connect, the close frame, the close
flushed, the backend's EOF), and paired runs measured that context at about
6% of its CPU.  The gateway's own events are twisted.logger events that name their
connection (C{conn_id}, C{peer}) in fields; none reads the legacy context.

L{GatewayReactor} runs each event as C{EPollReactor} does, through its own
C{_doReadOrWrite} (which turns an exception of C{doRead} or C{doWrite} into
the connection's loss, and logs it), without the context: a legacy message
logged during an I/O event has the system C{-}.  What C{callWithLogger}
also did, catching an exception that escapes the event (a protocol's
C{connectionLost} that raises) and logging it with the selectable's prefix,
it still does.

C{twistd -n tunnelgw} runs on it where epoll exists (Linux) unless the
operator chose a reactor (C{twistd --reactor NAME}); it is also the reactor
plugin C{tunnelgw} (C{twistd --reactor tunnelgw ...}).
"""

from __future__ import annotations

import errno
from typing import Any

from twisted.internet.epollreactor import EPollReactor
from twisted.python import log

__all__ = ["GatewayReactor", "install", "install_default"]


def _prefix(selectable: Any) -> str:
    try:
        return str(selectable.logPrefix())
    except Exception:
        return "(buggy logPrefix method)"


class GatewayReactor(EPollReactor):
    """
    C{EPollReactor} whose events run without a legacy logging context.
    """

    def doPoll(self, timeout: float | None) -> None:
        if timeout is None:
            timeout = -1  # wait until something is ready
        try:
            # as EPollReactor: at most one event per descriptor it tracks
            events = self._poller.poll(timeout, len(self._selectables))
        except OSError as err:
            if err.errno == errno.EINTR:
                return
            raise
        selectables = self._selectables
        handle = self._doReadOrWrite
        for fd, event in events:
            selectable = selectables.get(fd)
            if selectable is None:
                continue  # gone during an earlier event of this poll
            try:
                handle(selectable, fd, event)
            except KeyboardInterrupt:
                raise
            except BaseException:
                log.err(system=_prefix(selectable))

    doIteration = doPoll


def install() -> None:
    """
    Install L{GatewayReactor} as the global reactor (the C{tunnelgw}
    reactor plugin).
    """
    from twisted.internet.main import installReactor

    installReactor(GatewayReactor())


def install_default() -> None:
    """
    Install L{GatewayReactor} if no reactor is installed yet and this
    platform has epoll; otherwise leave the reactor to Twisted (the one
    chosen with C{--reactor}, or Twisted's default).
    """
    import sys

    if "twisted.internet.reactor" in sys.modules:
        return
    try:
        import select

        select.epoll  # noqa: B018 (present on Linux only)
    except AttributeError:
        return
    install()
