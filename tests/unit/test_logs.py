"""
The log observers write what Twisted's own formatters would: the same text
lines, JSON records that twisted.logger reads back to the same fields.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import time

from twisted.logger import (
    Logger,
    LogLevel,
    eventAsJSON,
    eventFromJSON,
    eventsFromJSONLogFile,
    formatEvent,
    formatEventAsClassicLogText,
    formatTime,
)
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tunnelgw.logs import format_json, format_text, json_observer, text_observer


def captured(emit: object) -> list[dict[str, object]]:
    events: list[dict[str, object]] = []
    log = Logger(namespace="tunnelgw.tunnel.Tunnel", observer=events.append)
    emit(log)  # type: ignore[operator]
    return events


def tunnel_close(log: Logger) -> None:
    log.info(
        "tunnel {conn_id} closed: {peer} -> {service} code={code} ({reason});"
        " up={bytes_up} down={bytes_down} bytes in {duration:.3f}s",
        event="tunnel_close",
        conn_id="a1b2c3",
        peer="192.0.2.7",
        service="echo",
        subprotocol=None,
        principal="anonymous",
        code=1000,
        reason="client closed\nsecond line",
        bytes_up=10,
        bytes_down=12,
        duration=0.25,
        required=["admin", "ops"],
    )


class TextTests(SynchronousTestCase):
    def twisted_text(self, event: dict[str, object]) -> str | None:
        return formatEventAsClassicLogText(event, formatTime=formatTime)

    def test_same_line_as_twisted(self) -> None:
        (event,) = captured(tunnel_close)
        self.assertEqual(format_text(event), self.twisted_text(event))
        self.assertIn("[tunnelgw.tunnel.Tunnel#info] tunnel a1b2c3 closed", format_text(event) or "")

    def test_same_second_same_stamp_next_second_new_stamp(self) -> None:
        (event,) = captured(tunnel_close)
        now = 1_800_000_000.25
        for when in (now, now + 0.5, now + 1.0, now - 3600 * 24 * 180):
            event["log_time"] = when
            self.assertEqual(format_text(event), self.twisted_text(event))

    def test_failures_and_odd_formats_go_to_twisted(self) -> None:
        def emit(log: Logger) -> None:
            try:
                raise ZeroDivisionError("x")
            except ZeroDivisionError:
                log.failure("went wrong for {who}", who="x")
            log.info("missing {nothere}")
            log.info("a call {call()}", call=lambda: "made")
            log.info(None)

        for event in captured(emit):
            self.assertEqual(format_text(event), self.twisted_text(event))

    def test_observer_writes_lines(self) -> None:
        out = io.StringIO()
        observer = text_observer(out)
        (event,) = captured(tunnel_close)
        observer(event)
        self.assertEqual(out.getvalue(), format_text(event))


class JSONTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        (event,) = captured(tunnel_close)
        back = eventFromJSON(format_json(event).lstrip("\x1e"))
        for key in ("event", "conn_id", "code", "reason", "subprotocol", "duration", "log_namespace"):
            self.assertEqual(back[key], event[key])
        self.assertEqual(back["required"], ["admin", "ops"])
        self.assertIs(back["log_level"], LogLevel.info)
        self.assertEqual(formatEvent(back), formatEvent(event))

    def test_objects_and_failures_go_to_twisted(self) -> None:
        def emit(log: Logger) -> None:
            log.info("with {thing}", thing=object())
            log.failure("boom", Failure(ValueError("x")))

        plain, failed = captured(emit)
        self.assertEqual(eventFromJSON(format_json(plain).lstrip("\x1e"))["thing"], {"unpersistable": True})
        back = eventFromJSON(format_json(failed).lstrip("\x1e"))
        self.assertIsInstance(back["log_failure"], Failure)

    def test_what_orjson_would_encode_its_own_way_goes_to_twisted(self) -> None:
        @dataclasses.dataclass
        class Point:
            x: int

        class Name(str):
            pass

        def emit(log: Logger) -> None:
            log.info("{p}", p=Point(1))
            log.info("{n}", n=Name("x"))
            log.info("{when}", when=datetime.datetime(2026, 1, 1))
            log.info("{big}", big=2**70)

        for event in captured(emit):
            self.assertEqual(format_json(event), f"\x1e{eventAsJSON(event)}\n")

    def test_nested_plain_values_and_levels(self) -> None:
        (event,) = captured(lambda log: log.error("{d}", d={"roles": ("a", "b"), "n": [1, None]}))
        back = eventFromJSON(format_json(event).lstrip("\x1e"))
        self.assertEqual(back["d"], {"roles": ["a", "b"], "n": [1, None]})
        self.assertIs(back["log_level"], LogLevel.error)
        self.assertNotIn("log_logger", back)

    def test_file_reads_back(self) -> None:
        out = io.StringIO()
        observer = json_observer(out)
        events = captured(tunnel_close) + captured(lambda log: log.warn("w {n}", n=time.time()))
        for event in events:
            observer(event)
        out.seek(0)
        back = list(eventsFromJSONLogFile(out))
        self.assertEqual([e["log_format"] for e in back], [e["log_format"] for e in events])


class LoggerTests(SynchronousTestCase):
    """
    tunnelgw's Logger makes the events Twisted's makes, field for field.
    """

    def events(self, logger_class: type[Logger], level: str) -> list[dict[str, object]]:
        events: list[dict[str, object]] = []
        trace: list[object] = []

        class Source:
            log = logger_class(observer=events.append)

        source = Source()
        getattr(source.log, level)("x {a}", a=1, log_trace=trace)
        source.log.emit(LogLevel.warn, "y", b=[2])
        for event in events:
            self.assertIs(event.pop("log_source"), source)
            self.assertIsInstance(event.pop("log_logger"), logger_class)
            self.assertLess(abs(float(event.pop("log_time")) - time.time()), 60)  # type: ignore[arg-type]
        self.assertEqual(len(trace), 1)
        events[0].pop("log_trace")
        return events

    def test_same_events_as_twisted(self) -> None:
        from tunnelgw.logs import Logger as OurLogger

        for level in ("debug", "info", "warn", "error", "critical"):
            self.assertEqual(self.events(OurLogger, level), self.events(Logger, level))

    def test_as_a_class_attribute_the_same_logger_as_twisteds(self) -> None:
        from tunnelgw.logs import Logger as OurLogger

        observer: list[object] = []

        class Source:
            ours = OurLogger(observer=observer.append)
            twisteds = Logger(observer=observer.append)

        source = Source()
        for through in (source, Source):
            ours, twisteds = through.ours, through.twisteds
            self.assertIsInstance(ours, OurLogger)
            self.assertEqual(
                (ours.namespace, ours.source, ours.observer),
                (twisteds.namespace, twisteds.source, twisteds.observer),
            )
            self.assertIs(ours.source, through)

    def test_an_invalid_level_is_twisteds_complaint(self) -> None:
        from tunnelgw.logs import Logger as OurLogger

        events: list[dict[str, object]] = []
        OurLogger(observer=events.append).emit("loud", "z")  # type: ignore[arg-type]
        self.assertEqual(events[0]["log_level"], LogLevel.critical)
        self.assertIn("invalid log level", str(events[0]["log_format"]))
