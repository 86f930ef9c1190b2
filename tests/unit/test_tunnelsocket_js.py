"""
The fallback's JavaScript client (tunnelgw/fallback/client/tunnelsocket.js)
in memory, with Node's own test runner against a fake gateway
(tests/js/): frames down cut anywhere, resent and out of order, messages
up numbered and kept until acknowledged, the closing handshakes, the
refusals.  The integration tests run it against the real gateway through
real proxies.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "js"


def test_tunnelsocket() -> None:
    node = shutil.which("node")
    assert node is not None, "Node missing: the fallback client's tests run on it (tests/peers/install.sh)"
    proc = subprocess.run(
        [node, "--test", "--test-reporter=tap", str(TESTS)],
        capture_output=True,
        timeout=60,
        cwd=TESTS,
    )
    report = proc.stdout.decode()
    assert proc.returncode == 0, report + proc.stderr.decode()
    passed = re.search(r"^# pass (\d+)$", report, re.MULTILINE)
    assert "# fail 0" in report and passed is not None and int(passed.group(1)) >= 5, report
