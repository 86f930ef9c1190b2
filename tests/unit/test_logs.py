"""
The log observers: the same text lines as Twisted's own formatters, and
JSON lines a collector reads.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import json
import time

from twisted.logger import (
    Logger,
    LogLevel,
    formatEvent,
    formatEventAsClassicLogText,
    formatTime,
)
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
    """
    One JSON object per line, flat: what line-by-line collectors read.
    """

    def test_one_object_per_line(self) -> None:
        (event,) = captured(tunnel_close)
        line = format_json(event)
        self.assertTrue(line.endswith("\n"))
        self.assertNotIn("\n", line[:-1])
        self.assertNotIn("\x1e", line)
        back = json.loads(line)
        for key in ("event", "conn_id", "code", "reason", "subprotocol", "duration"):
            self.assertEqual(back[key], event[key])
        self.assertEqual(back["required"], ["admin", "ops"])
        self.assertEqual(back["level"], "info")
        self.assertEqual(back["logger"], "tunnelgw.tunnel.Tunnel")
        self.assertEqual(back["msg"], formatEvent(event))
        self.assertFalse([key for key in back if key.startswith("log_")])

    def test_time_is_rfc3339_utc(self) -> None:
        (event,) = captured(tunnel_close)
        event["log_time"] = 1796000000.25
        self.assertEqual(json.loads(format_json(event))["time"], "2026-11-30T00:53:20.250Z")

    def test_objects_as_text_and_failures_as_tracebacks(self) -> None:
        def emit(log: Logger) -> None:
            log.info("with {thing}", thing=object())
            try:
                raise ValueError("x")
            except ValueError:
                log.failure("boom")

        plain, failed = (json.loads(format_json(e)) for e in captured(emit))
        self.assertTrue(plain["thing"].startswith("<object object at "))
        self.assertEqual(failed["level"], "critical")
        self.assertIn("ValueError: x", failed["failure"])
        self.assertEqual(failed["msg"], "boom")

    def test_what_orjson_would_encode_its_own_way_is_text(self) -> None:
        @dataclasses.dataclass
        class Point:
            x: int

        class Name(str):
            pass

        def emit(log: Logger) -> None:
            log.info("{p}", p=Point(1))
            log.info("{n}", n=Name("x"))
            log.info("{when}", when=datetime.datetime(2026, 1, 1))

        values = [json.loads(format_json(e)) for e in captured(emit)]
        self.assertEqual(
            [v.get("p", v.get("n", v.get("when"))) for v in values],
            [str(Point(1)), "x", "2026-01-01 00:00:00"],
        )

    def test_a_field_named_like_a_line_key_keeps_its_value(self) -> None:
        (event,) = captured(
            lambda log: log.warn("{msg} at {time} ({logger})", msg="hello", time=3, logger="high")
        )
        back = json.loads(format_json(event))
        self.assertEqual((back["field_msg"], back["field_time"], back["field_logger"]), ("hello", 3, "high"))
        self.assertEqual((back["msg"], back["level"]), ("hello at 3 (high)", "warn"))

    def test_nested_plain_values_and_levels(self) -> None:
        (event,) = captured(lambda log: log.error("{d}", d={"roles": ("a", "b"), "n": [1, None]}))
        back = json.loads(format_json(event))
        self.assertEqual(back["d"], {"roles": ["a", "b"], "n": [1, None]})
        self.assertEqual(back["level"], "error")

    def test_observer_writes_lines(self) -> None:
        out = io.StringIO()
        observer = json_observer(out)
        events = captured(tunnel_close) + captured(lambda log: log.warn("w {n}", n=time.time()))
        for event in events:
            observer(event)
        lines = out.getvalue().splitlines()
        self.assertEqual([json.loads(line)["msg"] for line in lines], [formatEvent(e) for e in events])


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
