"""
Log output for operators.

Every tunnelgw event is a twisted.logger event with named fields (C{event},
C{conn_id}, C{peer}, C{service}, C{subprotocol}, C{principal}, C{status},
C{code}, C{reason}, byte counts...).  Two observers for twistd's
C{--logger}::

    twistd -n --logger tunnelgw.logs.json_observer tunnelgw --config FILE
    twistd -n --logger tunnelgw.logs.text_observer tunnelgw --config FILE

C{json_observer} writes one JSON object per line to standard output
(L{json_record}: C{time}, C{level}, C{logger}, C{msg} and the event's own
fields; docs/operations.md documents them), what collectors that read
JSON lines take; C{text_observer} writes the same lines as twistd's own
text log.  A gateway logs several events per connection, and Twisted's
formatters (a pure-Python format-string parser, the time zone worked out
for every line, every field flattened into text for JSON) cost a fifth of
the CPU of a WebSocket handshake; these take the fast path for events of
plain values (the gateway's own) and hand anything else (failures,
objects) to Twisted's formatting.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO, Any

import orjson

import twisted.logger
from twisted.logger import (
    FileLogObserver,
    LogEvent,
    LogLevel,
    formatEvent,
    formatEventAsClassicLogText,
    formatTime,
    timeFormatRFC3339,
)

__all__ = ["Logger", "format_json", "format_text", "json_observer", "json_record", "message", "text_observer"]

_EMITTABLE = frozenset(LogLevel.iterconstants())
_new_object = object.__new__


class Logger(twisted.logger.Logger):
    """
    L{twisted.logger.Logger}, making the same events for less: C{emit}
    checks the level against a set rather than walking every level,
    C{info} (what the gateway's events are) builds its event without going
    through C{emit}'s keyword arguments once more, and the logger that
    C{self.log} makes is made without a second call.  A third of the cost of
    logging an event, and a gateway logs three per connection.
    """

    def __get__(self, instance: object, owner: type | None = None) -> Logger:
        # Twisted's: a logger named after the class, with the object (or
        # class) as its source; made without a second pass through __init__.
        assert owner is not None
        logger = _new_object(type(self))
        logger.namespace = f"{owner.__module__}.{owner.__name__}"
        logger.source = owner if instance is None else instance
        logger.observer = self.observer
        return logger

    def emit(self, level: LogLevel, format: str | None = None, **kwargs: object) -> None:
        if level not in _EMITTABLE:
            super().emit(level, format, **kwargs)  # Twisted's own complaint
            return
        self._publish(level, format, kwargs)

    def info(self, format: str | None = None, **kwargs: object) -> None:
        self._publish(LogLevel.info, format, kwargs)

    def _publish(self, level: LogLevel, format: str | None, event: dict[str, Any]) -> None:
        # the fields and order of twisted.logger.Logger.emit
        event.update(
            log_logger=self,
            log_level=level,
            log_namespace=self.namespace,
            log_source=self.source,
            log_format=format,
            log_time=time.time(),
        )
        if "log_trace" in event:
            event["log_trace"].append((self, self.observer))
        self.observer(event)


# Plain values (str, int, float, bool, None, lists, dicts of them) are
# encoded by orjson; objects it would otherwise turn into JSON its own way
# (dataclasses, dates, subclasses of str or int) are written as their text,
# as every other object is.
_ORJSON_OPTIONS = (
    orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS
)
RESERVED = ("time", "level", "logger", "msg")
"""The keys of every JSON line; an event's own field of one of these names is written as C{field_NAME}."""


class _SecondClock:
    """
    L{twisted.logger.formatTime} with its default (whole-second) format,
    worked out once per second instead of once per line.
    """

    __slots__ = ("_second", "_text")

    def __init__(self) -> None:
        self._second: int | None = None
        self._text = "-"

    def __call__(self, when: float | None) -> str:
        if when is None:
            return formatTime(when)
        second = int(when)
        if second != self._second:
            self._text = formatTime(second, timeFormatRFC3339)
            self._second = second
        return self._text


_CLOCK = _SecondClock()


def format_text(event: LogEvent, clock: Callable[[float | None], str] = _CLOCK) -> str | None:
    """
    C{event} as twistd's text log writes it (L{formatEventAsClassicLogText}).
    """
    log_format = event.get("log_format")
    if type(log_format) is not str or "log_failure" in event:
        return formatEventAsClassicLogText(event, formatTime=clock)
    try:
        text = log_format.format_map(event)
    except Exception:
        return formatEventAsClassicLogText(event, formatTime=clock)
    if not text:
        return None
    system = event.get("log_system")
    if system is None:
        level = event.get("log_level")
        system = f"{event.get('log_namespace', '-')}#{'-' if level is None else level.name}"
    return f"{clock(event.get('log_time'))} [{system}] {text}".replace("\n", "\n\t") + "\n"


def _text(value: object) -> str:
    return str(value)


class _UTCClock:
    """RFC 3339 UTC times with milliseconds, the date and time worked out once per second."""

    __slots__ = ("_second", "_prefix")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, when: float) -> str:
        second = int(when)
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._prefix}.{int((when - second) * 1000):03d}Z"


_UTC = _UTCClock()


def message(event: LogEvent) -> str:
    """The event's text, as the text observer writes it (without the time and system)."""
    log_format = event.get("log_format")
    if type(log_format) is str and "log_failure" not in event:
        try:
            return log_format.format_map(event)
        except Exception:
            pass
    return formatEvent(event)


def json_record(event: LogEvent) -> dict[str, Any]:
    """
    C{event} as one flat JSON object (docs/operations.md, "Logs"): C{time}
    (RFC 3339, UTC), C{level} (C{debug} ... C{critical}), C{logger} (the
    module and class that logged it), C{msg} (its text); then its own
    fields (C{event}, C{conn_id}, ...); a failure's traceback as C{failure}.
    """
    record = {}
    for key, value in event.items():
        if key.startswith("log_"):
            continue
        record[f"field_{key}" if key in RESERVED else key] = value
    failure = event.get("log_failure")
    if failure is not None:
        record["failure"] = failure.getTraceback()
    system = event.get("log_system")
    if system is not None:
        record["system"] = system
    level = event.get("log_level")
    record["time"] = _UTC(event.get("log_time") or time.time())
    record["level"] = "info" if level is None else level.name
    record["logger"] = event.get("log_namespace", "-")
    record["msg"] = message(event)
    return record


def format_json(event: LogEvent) -> str:
    """
    C{event} as one line of JSON (L{json_record}), newline-terminated:
    what line-by-line collectors read.
    """
    return orjson.dumps(json_record(event), default=_text, option=_ORJSON_OPTIONS).decode("utf-8") + "\n"


def json_observer(out: IO[Any] | None = None) -> FileLogObserver:
    """
    A twistd C{--logger} factory: JSON events to C{out} (standard output).
    """
    return FileLogObserver(sys.stdout if out is None else out, format_json)


def text_observer(out: IO[Any] | None = None) -> FileLogObserver:
    """
    A twistd C{--logger} factory: text lines to C{out} (standard output).
    """
    return FileLogObserver(sys.stdout if out is None else out, format_text)
