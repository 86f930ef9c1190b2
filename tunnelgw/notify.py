"""
The service manager's notifications (systemd's C{sd_notify} protocol):
C{READY=1} once the gateway listens, C{RELOADING=1} then C{READY=1} around
a reload, C{STOPPING=1} when it stops, each with a C{STATUS=} line for
C{systemctl status}.  One datagram on the UNIX socket named by
C{$NOTIFY_SOCKET} (C{@} for the abstract namespace); without it, nothing.

The protocol is a datagram of C{KEY=VALUE} lines: a few lines here rather
than a dependency (libsystemd's Python bindings need a C build).
"""

from __future__ import annotations

import os
import socket
import time

__all__ = ["notify"]


def notify(*lines: str, environ: dict[str, str] | None = None) -> bool:
    """
    Send C{lines} to the service manager.

    @return: whether there was one to send them to (and the send went).
    """
    address = (environ if environ is not None else os.environ).get("NOTIFY_SOCKET")
    if not address or address[0] not in "@/":
        return False
    if address[0] == "@":
        address = "\0" + address[1:]
    worker = (environ if environ is not None else os.environ).get("TUNNELGW_WORKER")
    if worker is not None:
        lines = (*lines, f"WORKER={worker}")  # which worker, for the supervisor (tunnelgw.workers)
    message = "\n".join(lines).encode("utf-8")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(message, address)
    except OSError:
        return False
    return True


def monotonic_usec() -> str:
    """C{MONOTONIC_USEC=}: when a reload began, as C{Type=notify-reload} wants it."""
    return f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"
