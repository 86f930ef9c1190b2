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
