"""
Configuration: one TOML file (stdlib C{tomllib}) turned into frozen
dataclasses.

  - L{tunnelgw.config.values}: reading a TOML table key by key (L{Table})
    and the value parsers: a leaf, and what login modules, policies and
    adapters use in their C{parse_config} (re-exported here, with
    L{ConfigError}, as the name plugin authors import them by);
  - L{tunnelgw.config.model}: the typed, frozen configuration;
  - L{tunnelgw.config.loader}: the whole file validated into the model
    (C{load}, C{loads}), asking the registries of adapters, login modules,
    policies and links.

Every key is validated; an unknown key, a wrong type or an out-of-range
value raises L{ConfigError} whose message starts with the dotted path of the
key (C{services.vnc.limits.max_frame_size: ...}).  The reference for every
key is C{docs/configuration.md}; C{etc/tunnelgw.toml} is a documented
example.
"""

from typing import Any

__all__ = [
    "ConfigError",
    "Table",
    "bool_value",
    "count_value",
    "file_bytes",
    "file_text",
    "positive_int_value",
    "positive_seconds_value",
    "seconds_value",
    "string_value",
    "strings_value",
]


def __getattr__(name: str) -> Any:
    # the names of tunnelgw.config.values, imported when first asked for:
    # a package's __init__ imports none of its children
    if name not in __all__:
        raise AttributeError(f"module 'tunnelgw.config' has no attribute {name!r}")
    from tunnelgw.config import values

    value = getattr(values, name)
    globals()[name] = value
    return value
