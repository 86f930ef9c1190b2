"""
The proxies that break WebSocket, as users meet them: Debian's nginx as a
reverse proxy configured as many are (HTTP/1.0 upstream, so no Upgrade
forwarded; response buffering on), and Debian's Squid as a forward proxy
that refuses CONNECT.  Each on a free loopback port, with its own
directory, stopped by its PID.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from tests.integration.harness import free_port, port_open, wait_for

__all__ = ["Nginx", "Squid"]


def _need(program: str) -> str:
    path = shutil.which(program) or shutil.which(program, path="/usr/sbin")
    if path is None:
        raise RuntimeError(f"{program} is missing: run tests/peers/install.sh (make test does)")
    return path


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def _terminate(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


class Nginx:
    """
    nginx in front of a gateway: C{/pages/} from C{pages} (static files),
    everything else to the gateway with nginx's defaults (HTTP/1.0
    upstream: the upgrade headers are dropped) and C{proxy_buffering on};
    under C{/buffered/}, the same, and C{X-Accel-Buffering} ignored.
    """

    def __init__(self, workdir: Path, gateway_port: int, pages: Path) -> None:
        self.workdir = workdir
        self.gateway_port = gateway_port
        self.pages = pages
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _write_config(self) -> Path:
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        (self.workdir / "tmp").mkdir(exist_ok=True)
        config = self.workdir / "nginx.conf"
        config.write_text(
            f"""
daemon off;
user root;
worker_processes 1;
pid nginx.pid;
error_log logs/error.log info;
events {{ worker_connections 512; }}
http {{
    access_log logs/access.log;
    client_body_temp_path tmp/body; proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi; uwsgi_temp_path tmp/uwsgi; scgi_temp_path tmp/scgi;
    types {{ text/html html; text/javascript js mjs; application/json json; }}
    server {{
        listen 127.0.0.1:{self.port};
        location /pages/ {{ alias {self.pages}/; }}
        location / {{
            proxy_pass http://127.0.0.1:{self.gateway_port};
            proxy_buffering on;
        }}
        # a proxy that buffers responses whatever the server asks
        location /buffered/ {{
            proxy_pass http://127.0.0.1:{self.gateway_port}/;
            proxy_buffering on;
            proxy_ignore_headers X-Accel-Buffering;
        }}
    }}
}}
"""
        )
        return config

    def start(self) -> Nginx:
        nginx = _need("nginx")
        config = self._write_config()
        check = subprocess.run(
            [nginx, "-t", "-p", str(self.workdir), "-c", str(config), "-e", "stderr"],
            capture_output=True,
            timeout=10,
        )
        assert check.returncode == 0, check.stderr.decode()
        self.process = subprocess.Popen(
            [nginx, "-p", str(self.workdir), "-c", str(config), "-e", "stderr"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: port_open(self.port), 10, "nginx listening")
        return self

    def restart(self) -> None:
        """Stop nginx at once (every connection through it cut) and start it again."""
        self.stop()
        self.start()

    def log(self) -> str:
        return _read(self.workdir / "logs" / "access.log")

    def stop(self) -> None:
        if self.process is not None:
            _terminate(self.process)
            self.process = None
            wait_for(lambda: not port_open(self.port), 10, "nginx stopped")


class Squid:
    """
    Squid as a forward proxy on loopback: plain HTTP passes, CONNECT is
    refused (403), so a WebSocket through it never opens.
    """

    def __init__(self) -> None:
        # Squid drops to user proxy: its directory is one it can reach
        # (pytest's are private to root), removed at the end
        self.workdir = Path(tempfile.mkdtemp(prefix="tunnelgw-squid-"))
        self.workdir.chmod(0o755)
        shutil.chown(self.workdir, "proxy", "proxy")
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Squid:
        squid = _need("squid")
        config = self.workdir / "squid.conf"
        config.write_text(
            f"""
http_port 127.0.0.1:{self.port}
visible_hostname tunnelgw-test
pid_filename {self.workdir}/squid.pid
cache_log {self.workdir}/cache.log
access_log stdio:{self.workdir}/access.log
coredump_dir {self.workdir}
cache deny all
cache_mem 8 MB
shutdown_lifetime 0 seconds
pinger_enable off
acl local_src src 127.0.0.1/32
acl CONNECT method CONNECT
http_access deny CONNECT
http_access allow local_src
http_access deny all
"""
        )
        self.process = subprocess.Popen(
            [squid, "-N", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for(lambda: port_open(self.port), 20, "squid listening")
        return self

    def log(self) -> str:
        return _read(self.workdir / "access.log")

    def stop(self) -> None:
        if self.process is not None:
            _terminate(self.process)
            self.process = None
        shutil.rmtree(self.workdir, ignore_errors=True)
