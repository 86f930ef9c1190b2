"""
A real desktop behind a real VNC server for the RFB integration tests:
Xvfb (display number from -displayfd, no guessing), a yellow xterm whose
shell writes each line typed into it to a file, and x11vnc on a free
loopback port, with or without a VNC password.  Stopped by the PIDs
started here.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

from tests.integration.harness import free_port, wait_for

YELLOW = (255, 255, 0)


def _need(*programs: str) -> None:
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        # A missing peer fails the test run; it never skips it.
        raise RuntimeError(f"{', '.join(missing)} not installed: run tests/peers/install.sh (make test does)")


class Desktop:
    def __init__(self, state: Path, password: str | None = None) -> None:
        _need("Xvfb", "x11vnc", "xterm", "xwd")
        self.state = state
        self.password = password
        self.port = free_port()
        self.typed = state / "typed.txt"
        self.display = ""
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> Desktop:
        self.state.mkdir(parents=True, exist_ok=True)
        log = open(self.state / "desktop.log", "wb")
        read_fd, write_fd = os.pipe()
        xvfb = subprocess.Popen(
            ["Xvfb", "-screen", "0", "1024x768x24", "-nolisten", "tcp", "-displayfd", str(write_fd)],
            pass_fds=(write_fd,),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._procs.append(xvfb)
        os.close(write_fd)
        with os.fdopen(read_fd) as ready:
            number = ready.readline().strip()  # written once Xvfb is ready
        if not number:
            self.stop()
            raise RuntimeError("Xvfb did not start")
        self.display = f":{number}"
        env = {**os.environ, "DISPLAY": self.display}
        self.typed.write_text("")
        # a full-screen yellow terminal: what the browser must show, and
        # where typed keys land (the shell appends each line to a file)
        self._procs.append(
            subprocess.Popen(
                [
                    "xterm",
                    "-geometry",
                    "160x60+0+0",
                    "-bg",
                    "yellow",
                    "-fg",
                    "black",
                    "-e",
                    "sh",
                    "-c",
                    f"exec cat >> {self.typed}",
                ],  # fmt: skip
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        auth = ["-nopw"]
        if self.password is not None:
            passwd = self.state / "vncpasswd"
            subprocess.run(
                ["x11vnc", "-storepasswd", self.password, str(passwd)], check=True, capture_output=True
            )
            auth = ["-rfbauth", str(passwd)]
        self._procs.append(
            subprocess.Popen(
                [
                    "x11vnc",
                    "-display",
                    self.display,
                    "-rfbport",
                    str(self.port),
                    "-rfbportv6",
                    "-1",
                    "-listen",
                    "127.0.0.1",
                    "-noipv6",
                    *auth,
                    "-forever",
                    "-shared",
                    "-norc",
                    "-quiet",
                ],  # fmt: skip
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        log.close()
        try:
            wait_for(self._banner, 20, "x11vnc to send its RFB banner")
            wait_for(self._xterm_mapped, 20, "the xterm to appear")
        except BaseException:
            self.stop()
            raise
        return self

    def _banner(self) -> bool:
        for proc in self._procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args!r} exited: {(self.state / 'desktop.log').read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                return s.recv(12).startswith(b"RFB 003.")
        except OSError:
            return False

    def screen(self) -> bytes:
        """
        The X screen's pixels (xwd), straight from the X server.
        """
        out = subprocess.run(
            ["xwd", "-root", "-silent", "-display", self.display], capture_output=True, check=True, timeout=20
        ).stdout
        return out[-1024 * 768 * 4 :]

    def _xterm_mapped(self) -> bool:
        # the yellow terminal covers the screen's top left (pixels are B, G, R, x)
        offset = 4 * (100 * 1024 + 100)
        return self.screen()[offset : offset + 3] == b"\x00\xff\xff"

    def stop(self) -> None:
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(5)
