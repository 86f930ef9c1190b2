"""
The C{rfb} adapter's options (C{[services.NAME.rfb]}).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tunnelgw.adapters.rfb.codec import SECURITY_TYPES, VNC_AUTH
from tunnelgw.config.values import (
    ConfigError,
    strings_value,
)

__all__ = ["RfbOptions"]


@dataclass(frozen=True)
class RfbOptions:
    security_types: frozenset[int] = frozenset({VNC_AUTH})
    password: str | None = None
    max_cut_text: int = 256 * 1024
    max_encodings: int = 128
    on_revoke: str = "close"
    """What a revocation does to a session: C{close} it, or make it C{view_only} (its input dropped)."""


def security_types_value(key: str, value: Any) -> frozenset[int]:
    names = strings_value(key, value)
    unknown = [n for n in names if n not in SECURITY_TYPES]
    if unknown:
        raise ConfigError(
            f"{key}: {', '.join(unknown)}: the gateway can follow only none and vnc"
            " (other security types encrypt or hide what it must inspect)"
        )
    if not names:
        raise ConfigError(f"{key}: at least one security type is needed")
    return frozenset(SECURITY_TYPES[n] for n in names)
