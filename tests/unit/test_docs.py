"""
docs/configuration.md documents every configuration key (login module and
policy options are documented in docs/security.md, which it points to).
"""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from tunnelgw.config.model import Limits

ROOT = Path(__file__).resolve().parents[2]
# Every key is read through tunnelgw.config.Table: take/require (values),
# table (sub-tables) and value (raw sub-tables, such as module options).
KEY_READ = re.compile(r"\.(?:take|require|table|value)\(\s*\"([a-z_]+)\"")


def keys_in_code() -> set[str]:
    keys = {field.name for field in fields(Limits)}
    for path in (ROOT / "tunnelgw").rglob("*.py"):
        keys.update(KEY_READ.findall(path.read_text()))
    return keys


def test_every_key_is_documented() -> None:
    docs = (ROOT / "docs" / "configuration.md").read_text() + (ROOT / "docs" / "security.md").read_text()
    undocumented = sorted(
        key
        for key in keys_in_code()
        if f"`{key}`" not in docs and not re.search(rf"[\[.]{key}(\.NAME)?[\].]", docs)
    )
    assert undocumented == []


def test_the_scan_finds_keys() -> None:
    keys = keys_in_code()
    assert {"listen", "handshake_timeout", "max_frame_size", "jwks_file", "security_types"} <= keys


def test_the_map_names_every_module() -> None:
    """
    docs/architecture.md's tree names every module: by its path, or by its
    file name on the line of its package.
    """
    text = (ROOT / "docs" / "architecture.md").read_text()
    lines = text.splitlines()
    missing = []
    for path in sorted((ROOT / "tunnelgw").rglob("*.py")):
        relative = str(path.relative_to(ROOT))
        if relative in text:
            continue
        package = str(path.parent.relative_to(ROOT)) + "/"
        stem = path.stem if path.name != "__init__.py" else None
        here = [i for i, line in enumerate(lines) if line.startswith(package)]
        # the package's line and its continuation lines
        block = " ".join(lines[i] + " " + (lines[i + 1] if i + 1 < len(lines) else "") for i in here)
        if not here or (stem is not None and stem not in block):
            missing.append(relative)
    assert missing == []
