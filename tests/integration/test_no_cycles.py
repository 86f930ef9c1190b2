"""
A finished tunnel leaves nothing for the garbage collector, with real
sockets and Twisted's real connectors too (tests/unit/test_site.py's
NoCyclesTests checks the same in memory, where Twisted's TCP connections
and endpoints are fakes).  Run in a process of its own: see cycles_probe.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_finished_tunnels_leave_no_cycles() -> None:
    root = Path(__file__).parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "tests.integration.cycles_probe"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=root,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["tunnels"] == 30
    assert result["garbage"] == {}
    # nothing holds a finished tunnel: no timer of its is left to fire
    assert result["tunnels_alive"] == 0
    assert result["timers"] == 0, result
