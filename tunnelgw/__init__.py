"""
tunnelgw: a WebSocket gateway to TCP services, on Twisted.
"""

from typing import Any

__all__ = ["ConfigError", "GatewayConfig", "ServiceConfig", "load", "loads", "__version__"]

__version__ = "0.1.0"

# The public names, imported when first asked for: importing any module of
# tunnelgw runs this file first, and a stage must not load the
# configuration loader (and through it every adapter) to get there.
_PUBLIC = {
    "load": "tunnelgw.config.loader",
    "loads": "tunnelgw.config.loader",
    "GatewayConfig": "tunnelgw.config.model",
    "ServiceConfig": "tunnelgw.config.model",
    "ConfigError": "tunnelgw.errors",
}


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'tunnelgw' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
