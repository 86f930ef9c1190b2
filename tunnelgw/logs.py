"""
Log output for operators.

Every tunnelgw event is a twisted.logger event with named fields (C{event},
C{conn_id}, C{peer}, C{service}, C{subprotocol}, C{principal}, C{status},
C{code}, C{reason}, byte counts...).  Two observers for twistd's
C{--logger}::

    twistd -n --logger tunnelgw.logs.json_observer tunnelgw --config FILE
    twistd -n --logger tunnelgw.logs.text_observer tunnelgw --config FILE

C{json_observer} writes one JSON object per event to standard output
(record-separated, as L{twisted.logger.jsonFileLogObserver} does; read it
back with L{twisted.logger.eventsFromJSONLogFile}); C{text_observer} writes
the same lines as twistd's own text log.  Both produce what Twisted's
formatters would, but a gateway logs several events per connection, and
Twisted's formatters (a pure-Python format-string parser, the time zone
worked out for every line, every field flattened into text for JSON) cost
a fifth of the CPU of a WebSocket handshake; these take the fast path for
events of plain values (the gateway's own) and hand anything else
(failures, objects) to Twisted's.
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
    eventAsJSON,
    formatEventAsClassicLogText,
    formatTime,
    timeFormatRFC3339,
)

__all__ = ["Logger", "format_json", "format_text", "json_observer", "text_observer"]

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


# How twisted.logger's JSON marks a log level, so that
# eventsFromJSONLogFile gives back LogLevel constants.
_LEVEL_UUID = "02E59486-F24D-46AD-8224-3ACDF2A5732A"
_LEVELS = {level: {"name": level.name, "__class_uuid__": _LEVEL_UUID} for level in LogLevel.iterconstants()}
# Objects that Twisted's JSON would only mark as unpersistable.
_DROPPED = ("log_logger", "log_source")
# Plain values (str, int, float, bool, None, lists, dicts of them) are
# encoded by orjson; objects it would otherwise turn into JSON its own way
# (dataclasses, dates, subclasses of str or int, NumPy arrays) go to
# Twisted's encoder, as every other object does.
_ORJSON_OPTIONS = (
    orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS
)


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


def _level_or_refuse(value: object) -> object:
    """
    orjson's C{default}: a log level as Twisted saves it; anything else it
    cannot encode natively makes the event Twisted's to format.
    """
    try:
        return _LEVELS[value]
    except (KeyError, TypeError):
        raise TypeError from None


def format_json(event: LogEvent) -> str:
    """
    C{event} as L{twisted.logger.jsonFileLogObserver} writes it: one
    record, readable with L{twisted.logger.eventsFromJSONLogFile}.
    """
    record = dict(event)
    for key in _DROPPED:
        record.pop(key, None)
    try:
        text = orjson.dumps(record, default=_level_or_refuse, option=_ORJSON_OPTIONS).decode("utf-8")
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return f"\x1e{eventAsJSON(event)}\n"  # something only Twisted knows how to save
    return f"\x1e{text}\n"


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
