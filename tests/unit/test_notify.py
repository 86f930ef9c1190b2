"""
sd_notify: one datagram of KEY=VALUE lines on $NOTIFY_SOCKET, or nothing.
"""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tunnelgw.notify import monotonic_usec, notify


class NotifyTests(SynchronousTestCase):
    def test_a_datagram_on_the_socket(self) -> None:
        path = str(Path(tempfile.mkdtemp()) / "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
            manager.bind(path)
            self.assertTrue(notify("READY=1", "STATUS=serving", environ={"NOTIFY_SOCKET": path}))
            self.assertEqual(manager.recv(100), b"READY=1\nSTATUS=serving")

    def test_the_abstract_namespace(self) -> None:
        name = f"tunnelgw-test-{id(self)}"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
            manager.bind("\0" + name)
            self.assertTrue(notify("STOPPING=1", environ={"NOTIFY_SOCKET": "@" + name}))
            self.assertEqual(manager.recv(100), b"STOPPING=1")

    def test_nothing_without_a_manager(self) -> None:
        self.assertFalse(notify("READY=1", environ={}))
        self.assertFalse(notify("READY=1", environ={"NOTIFY_SOCKET": "relative"}))
        self.assertFalse(notify("READY=1", environ={"NOTIFY_SOCKET": "/nonexistent/socket"}))

    def test_monotonic_usec(self) -> None:
        key, value = monotonic_usec().split("=")
        self.assertEqual(key, "MONOTONIC_USEC")
        self.assertGreater(int(value), 0)

    def test_a_worker_says_which(self) -> None:
        path = str(Path(tempfile.mkdtemp()) / "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
            manager.bind(path)
            notify("READY=1", environ={"NOTIFY_SOCKET": path, "TUNNELGW_WORKER": "3"})
            self.assertEqual(manager.recv(100), b"READY=1\nWORKER=3")
