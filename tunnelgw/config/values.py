"""
Reading a TOML table key by key (L{Table}), and the value parsers: every
error names the dotted key and says why.  A leaf: it imports nothing of
tunnelgw but the errors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import hyperlink

from tunnelgw.errors import ConfigError

__all__ = [
    "ConfigError",
    "KiB",
    "MiB",
    "Table",
    "bool_value",
    "count_value",
    "file_bytes",
    "file_text",
    "normalize_origin",
    "origins_value",
    "path_value",
    "positive_int_value",
    "positive_seconds_value",
    "seconds_value",
    "string_value",
    "strings_value",
    "subprotocols_value",
]

T = TypeVar("T")

KiB = 1024
MiB = 1024 * KiB


class Table:
    """
    A TOML table being read: each key is taken once, with a type check, and
    whatever is left at the end is an unknown key.  Login modules use it in
    their C{parse_config} so that their errors read like the rest.
    """

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a table, got {_kind(data)}")
        self._data = dict(data)
        self.path = path
        self.source: dict[str, Any] = data
        """The table as the file had it (what a reload compares)."""

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def take(self, name: str, check: Callable[[str, Any], T], default: T) -> T:
        if name not in self._data:
            return default
        return check(self.key(name), self._data.pop(name))

    def require(self, name: str, check: Callable[[str, Any], T]) -> T:
        if name not in self._data:
            raise ConfigError(f"{self.key(name)}: required key is missing")
        return check(self.key(name), self._data.pop(name))

    def table(self, name: str) -> Table:
        return Table(self._data.pop(name, {}), self.key(name))

    def tables(self, name: str, required: bool = False) -> list[Table]:
        """
        The array of tables C{[[path.name]]}, one L{Table} per entry; with
        C{required}, at least one.
        """
        key = self.key(name)
        items = self._data.pop(name, [])
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise ConfigError(f"{key}: expected [[{key}]] tables")
        if required and not items:
            raise ConfigError(f"{key}: at least one [[{key}]] entry is needed")
        return [Table(item, f"{key}[{i}]") for i, item in enumerate(items)]

    def choice(self, name: str, choices: Sequence[str], default: str | None = None) -> str:
        """
        A string among C{choices}; without a C{default} the key is required.
        """
        value = (
            self.require(name, string_value) if default is None else self.take(name, string_value, default)
        )
        if value not in choices:
            raise ConfigError(f"{self.key(name)}: expected one of {', '.join(choices)}, got {value!r}")
        return value

    def value(self, name: str, default: Any) -> Any:
        """
        A value of any type (a module's own options table, checked by it).
        """
        return self._data.pop(name, default)

    def done(self) -> None:
        if self._data:
            unknown = ", ".join(sorted(self.key(k) for k in self._data))
            raise ConfigError(f"{unknown}: unknown key")


def _kind(value: Any) -> str:
    return {
        dict: "a table",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a float",
    }.get(type(value), type(value).__name__)


def string_value(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}: expected a non-empty string, got {_kind(value)}")
    return value


def bool_value(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {_kind(value)}")
    return value


def file_bytes(key: str, path: str) -> bytes:
    """
    The contents of a file that configuration key C{key} names.

    @raise ConfigError: it cannot be read (naming the key, the path and why).
    """
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ConfigError(f"{key}: {path}: {e.strerror}") from None


def file_text(key: str, path: str) -> str:
    """
    As L{file_bytes}, decoded as UTF-8.
    """
    try:
        return file_bytes(key, path).decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{key}: {path}: not UTF-8 text") from None


def positive_int_value(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{key}: expected a positive integer, got {value!r}")
    return value


def count_value(key: str, value: Any) -> int:
    """
    An integer >= 0 (0 turns the limit off, where the reference says so).
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{key}: expected an integer >= 0, got {value!r}")
    return value


def seconds_value(key: str, value: Any) -> float:
    """
    A duration in seconds; 0 means "off" where the key allows it.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"{key}: expected a number of seconds >= 0, got {value!r}")
    return float(value)


def positive_seconds_value(key: str, value: Any) -> float:
    seconds = seconds_value(key, value)
    if seconds == 0:
        raise ConfigError(f"{key}: must be greater than 0")
    return seconds


def strings_value(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{key}: expected an array of strings, got {_kind(value)}")
    items = tuple(string_value(f"{key}[{i}]", v) for i, v in enumerate(value))
    if len(set(items)) != len(items):
        raise ConfigError(f"{key}: duplicate entries")
    return items


def normalize_origin(origin: str) -> str:
    """
    Normalize a serialized origin (RFC 6454): lowercase scheme and host,
    default port dropped.  C{null} stays C{null}.

    @raise ValueError: C{origin} is not C{scheme://host[:port]}.
    """
    origin = origin.strip()
    if origin == "null":
        return origin
    url = hyperlink.URL.from_text(origin)
    if not url.scheme or not url.host or url.path not in ((), ("",)):
        raise ValueError(f"not an origin (scheme://host[:port]): {origin!r}")
    if url.query or url.fragment or url.userinfo:
        raise ValueError(f"not an origin (scheme://host[:port]): {origin!r}")
    scheme = url.scheme.lower()
    host = url.host.lower()
    default = {"http": 80, "https": 443, "ws": 80, "wss": 443}.get(scheme)
    port = url.port
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == default:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def path_value(key: str, value: Any) -> str:
    path = string_value(key, value)
    if not path.startswith("/") or "?" in path or "#" in path:
        raise ConfigError(f"{key}: expected an absolute URL path like /echo, got {path!r}")
    return path


_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def subprotocols_value(key: str, value: Any) -> tuple[str, ...]:
    names = strings_value(key, value)
    for name in names:
        if not set(name) <= _TOKEN_CHARS:
            raise ConfigError(f"{key}: {name!r} is not a valid subprotocol token (RFC 6455 4.1)")
    return names


def origins_value(key: str, value: Any) -> frozenset[str]:
    result = set()
    for i, origin in enumerate(strings_value(key, value)):
        try:
            result.add(normalize_origin(origin))
        except ValueError as e:
            raise ConfigError(f"{key}[{i}]: {e}") from None
    return frozenset(result)
