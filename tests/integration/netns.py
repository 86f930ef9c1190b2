"""
A layered-DMZ topology of Linux network namespaces, built and torn down by
the tests themselves (iproute2 veth pairs, nftables rules):

    client 10.71.1.2 ── 10.71.1.1 outer 10.71.2.1 ── 10.71.2.2 inner 10.71.3.1 ── 10.71.3.2 backend

No namespace forwards packets, so the client reaches only the outer, and
only the inner reaches the backend.  The inner's zone filters what comes
from the outer: in forward mode only new connections to its gateway port
are accepted; in reverse mode every inbound SYN is dropped (the inner dials
out).  A counter in the inner's input chain counts what arrives from the
outer.  Traffic never leaves these namespaces.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from typing import Any

from tests.integration.harness import wait_for

ADDRESSES = {
    "client": "10.71.1.2",
    "outer": "10.71.1.1",
    "outer_dmz": "10.71.2.1",
    "inner": "10.71.2.2",
    "inner_back": "10.71.3.1",
    "backend": "10.71.3.2",
}


def _need() -> None:
    missing = [tool for tool in ("ip", "nft") if shutil.which(tool) is None]
    if missing:
        raise RuntimeError(f"{', '.join(missing)} missing: run tests/peers/install.sh (make test does)")
    if os.geteuid() != 0:
        raise RuntimeError("network namespaces need root")


def run(*args: str, check: bool = True) -> str:
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


class Topology:
    def __init__(self) -> None:
        _need()
        tag = uuid.uuid4().hex[:6]
        self.ns = {role: f"tgw-{role}-{tag}" for role in ("client", "outer", "inner", "backend")}
        self.address = ADDRESSES
        self._procs: list[subprocess.Popen[bytes]] = []

    def exec(self, role: str) -> list[str]:
        """
        The command prefix that runs a program in C{role}'s namespace.
        """
        return ["ip", "netns", "exec", self.ns[role]]

    def build(self, inner_port: int, reverse: bool) -> Topology:
        for name in self.ns.values():
            run("ip", "netns", "add", name)
        for name in self.ns.values():
            run("ip", "-n", name, "link", "set", "lo", "up")
        self._veth("client", self.address["client"], "outer", self.address["outer"], "a")
        self._veth("outer", self.address["outer_dmz"], "inner", self.address["inner"], "b")
        self._veth("inner", self.address["inner_back"], "backend", self.address["backend"], "c")
        for name in self.ns.values():
            run("ip", "netns", "exec", name, "sysctl", "-q", "-w", "net.ipv4.ip_forward=0")
        from_outer = (
            'iifname "veth-b-inner" ct state new drop'
            if reverse
            else f'iifname "veth-b-inner" tcp dport {inner_port} ct state new accept'
        )
        rules = f"""
table inet dmz {{
  counter from_outer {{ }}
  chain input {{
    type filter hook input priority 0; policy drop;
    iif lo accept
    iifname "veth-b-inner" counter name from_outer
    ct state established,related accept
    {from_outer}
  }}
}}
"""
        subprocess.run(
            [*self.exec("inner"), "nft", "-f", "-"],
            input=rules,
            text=True,
            check=True,
            capture_output=True,
            timeout=30,
        )
        return self

    def _veth(self, left: str, left_ip: str, right: str, right_ip: str, tag: str) -> None:
        a, b = f"veth-{tag}-{left}", f"veth-{tag}-{right}"
        run(
            "ip",
            "link",
            "add",
            a,
            "netns",
            self.ns[left],
            "type",
            "veth",
            "peer",
            "name",
            b,
            "netns",
            self.ns[right],
        )
        for ns, dev, ip in ((self.ns[left], a, left_ip), (self.ns[right], b, right_ip)):
            run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            run("ip", "-n", ns, "link", "set", dev, "up")

    def packets_from_outer(self) -> int:
        """
        Packets that reached the inner's zone from the outer (dropped ones
        included).
        """
        out = run(*self.exec("inner"), "nft", "list", "counter", "inet", "dmz", "from_outer")
        words = out.split()
        for word, value in zip(words, words[1:], strict=False):
            if word == "packets":
                return int(value)
        raise RuntimeError(f"no packet count in {out!r}")

    def start(self, role: str, args: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([*self.exec(role), *args], **kw)
        self._procs.append(proc)
        return proc

    def port_open(self, role: str, host: str, port: int) -> bool:
        probe = f"import socket; socket.create_connection(({host!r}, {port}), timeout=1).close()"
        return (
            subprocess.run(
                [*self.exec(role), "python3", "-c", probe], capture_output=True, timeout=10
            ).returncode
            == 0
        )

    def wait_port(self, role: str, host: str, port: int, timeout: float = 20) -> None:
        wait_for(lambda: self.port_open(role, host, port), timeout, f"{host}:{port} from {role}")

    def destroy(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        for name in self.ns.values():
            run("ip", "netns", "del", name, check=False)
