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

L{GatewayReactor} (L{tunnelgw._compat.twisted.QuietEPollReactor}: it uses
Twisted's private names) runs each event as C{EPollReactor} does, through its own
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

from typing import Any

from tunnelgw._compat import enabled
from tunnelgw._compat.twisted import QuietEPollReactor

__all__ = ["GatewayReactor", "install", "install_default"]


class GatewayReactor(QuietEPollReactor):
    """
    The gateway's reactor (the name its start-up log line gives):
    L{tunnelgw._compat.twisted.QuietEPollReactor}.
    """


def gateway_reactor() -> Any:
    """
    L{GatewayReactor}, or Twisted's C{EPollReactor} with the shortcut
    C{reactor} switched off.
    """
    if enabled("reactor"):
        return GatewayReactor()
    from twisted.internet.epollreactor import EPollReactor

    return EPollReactor()


def install() -> None:
    """
    Install L{GatewayReactor} as the global reactor (the C{tunnelgw}
    reactor plugin), or Twisted's C{EPollReactor} where the shortcut
    C{reactor} is switched off (L{tunnelgw._compat}).
    """
    from twisted.internet.main import installReactor

    installReactor(gateway_reactor())


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
