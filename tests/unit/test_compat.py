"""
The fence around library internals (tunnelgw._compat): nothing outside it
touches a private name of Twisted, autobahn or txaio (an AST scan of the
tree), and every internal it relies on is checked here against the real
library objects, so that a release that changes one fails this file.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pprint
import textwrap
from collections import deque
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import autobahn.twisted.websocket as autobahn_twisted
import autobahn.util
import autobahn.websocket.protocol as autobahn_protocol
import txaio
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import defer, task, tcp
from twisted.internet.abstract import FileDescriptor
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http import HTTPChannel, Request

import tunnelgw._compat as compat
from tunnelgw._compat import reads
from tunnelgw._compat.autobahn import LAZY_NAMES, class_options
from tunnelgw._compat.payloads import SMALL_FRAME, SmallMasker, TextValidator, unmask
from tunnelgw._compat.twisted import (
    BoundedExpatStream,
    QuietEPollReactor,
    app_buffered,
    buffered,
    early_bytes,
    release_connector,
)
from tunnelgw._compat.txaio import TIMER_GRANULARITY, autobahn_seconds
from tunnelgw.websocket.server import TunnelWebSocket

PACKAGE = Path(__file__).resolve().parents[2] / "tunnelgw"
LIBRARIES = ("twisted", "autobahn", "txaio")


# -- the scan ----------------------------------------------------------------------


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _defined_names(tree: ast.AST) -> set[str]:
    """Every name a module defines: functions, classes, attributes, variables, slots."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name.split(".")[0])
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
            names.add(node.value)  # __slots__ entries, setattr names
    return names


def library_private_names(module: str, class_name: str) -> set[str]:
    """
    The private names the library classes under tunnelgw's class
    C{module.class_name} define or set (on the class or through C{self}).
    """
    cls = getattr(importlib.import_module(module), class_name, None)
    names: set[str] = set()
    for base in getattr(cls, "__mro__", ()):
        if base.__module__.split(".")[0] not in LIBRARIES:
            continue
        names |= {name for name in vars(base) if _private(name)}
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(base)))
        except (OSError, TypeError):
            continue
        names |= {name for name in _defined_names(tree) if _private(name)}
    return names


def _outside_the_fence() -> dict[str, ast.Module]:
    return {
        str(path.relative_to(PACKAGE.parent)): ast.parse(path.read_text(), str(path))
        for path in sorted(PACKAGE.rglob("*.py"))
        if "_compat" not in path.relative_to(PACKAGE).parts
    }


def trespasses(
    modules: dict[str, ast.Module],
    library_names: Callable[[str, str], set[str]],
    own_names: set[str],
) -> list[str]:
    """
    Where a module reaches into a library: a private name imported from
    it, a private attribute that tunnelgw never defines read or written on
    any object, a library's private name used through C{self} in a class
    built on a library class (an override), and a library module's
    attribute replaced.
    """
    found = []
    for where, tree in modules.items():
        library_modules = {
            alias.asname or alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
            if alias.name.split(".")[0] in LIBRARIES
        }
        library_bases = {
            alias.asname or alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in LIBRARIES
            for alias in node.names
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in LIBRARIES:
                parts = [*(node.module or "").split("."), *(a.name for a in node.names)]
                if any(_private(part) for part in parts):
                    found.append(f"{where}:{node.lineno} imports {node.module}: {parts}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] in LIBRARIES and any(map(_private, alias.name.split("."))):
                        found.append(f"{where}:{node.lineno} imports {alias.name}")
            elif isinstance(node, ast.Attribute):
                base = node.value
                if (
                    isinstance(base, ast.Name)
                    and base.id in library_modules
                    and isinstance(node.ctx, ast.Store)
                ):
                    found.append(f"{where}:{node.lineno} replaces {base.id}.{node.attr}")
                if _private(node.attr) and node.attr not in own_names:
                    found.append(f"{where}:{node.lineno} touches .{node.attr}")
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                if node.func.id in ("getattr", "setattr", "hasattr", "delattr") and len(node.args) >= 2:
                    target, name = node.args[0], node.args[1]
                    if isinstance(name, ast.Constant) and isinstance(name.value, str):
                        if _private(name.value) and name.value not in own_names:
                            found.append(f"{where}:{node.lineno} touches {name.value!r}")
                        if isinstance(target, ast.Name) and target.id in library_modules:
                            found.append(f"{where}:{node.lineno} {node.func.id} on {target.id}")
            elif isinstance(node, ast.ClassDef):
                built_on_library = any(
                    (isinstance(b, ast.Name) and b.id in library_bases)
                    or (
                        isinstance(b, ast.Attribute)
                        and isinstance(b.value, ast.Name)
                        and b.value.id in library_modules
                    )
                    for b in node.bases
                )
                if not built_on_library:
                    continue
                module = where.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
                inherited = library_names(module, node.name)
                for inner in ast.walk(node):
                    used: str | None = None
                    if isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        used = inner.name
                    elif isinstance(inner, ast.Attribute) and isinstance(inner.value, ast.Name):
                        used = inner.attr if inner.value.id in ("self", "cls", "super") else None
                    if used is not None and _private(used) and used in inherited:
                        found.append(f"{where}:{inner.lineno} {node.name} uses the library's {used}")
    return found


def test_nothing_outside_the_fence_touches_a_library_private_name() -> None:
    # a private name is tunnelgw's own where tunnelgw defines it; one it
    # only reads is a library's
    modules = _outside_the_fence()
    own = set().union(*(_defined_names(tree) for tree in modules.values()))
    assert trespasses(modules, library_private_names, own) == []


def test_the_scan_finds_each_kind_of_trespass() -> None:
    source = """
import autobahn.websocket.protocol as ap
from twisted.internet import _sslverify
from twisted.web.http import HTTPChannel

ap.pformat = str
setattr(ap, "hltype", str)

class Channel(HTTPChannel):
    def _dataBuffer(self):
        return self._dataBuffer

def f(request, factory):
    getattr(factory, "_onConnection", None)
    return request._disconnected
"""
    found = trespasses({"x.py": ast.parse(source)}, lambda module, name: {"_dataBuffer"}, {"_dataBuffer"})
    lines = sorted(int(line.split(" ", 1)[0].split(":")[1]) for line in found)
    # 3: a private module imported; 6: a module attribute replaced; 7:
    # setattr on a library module; 10, 11: an override of a private method,
    # and its name through self, in a class built on a library's; 14:
    # getattr of a private name; 15: a private attribute read
    assert lines == [3, 6, 7, 10, 11, 14, 15], found


def test_the_fence_is_a_leaf_that_names_every_shortcut() -> None:
    tree = ast.parse((PACKAGE / "_compat" / "__init__.py").read_text())
    imported = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert all(
        getattr(n, "module", None) in ("__future__", None) for n in imported if isinstance(n, ast.ImportFrom)
    )
    assert [a.name for n in imported if isinstance(n, ast.Import) for a in n.names] == ["os"]
    used = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "enabled":
                used.add(node.args[0].value)  # type: ignore[attr-defined]
    assert used == set(compat.SHORTCUTS)


def test_switches_from_the_environment() -> None:
    assert compat.disabled({}) == frozenset()
    assert compat.disabled({compat.ENVIRONMENT: "all"}) == frozenset(compat.SHORTCUTS)
    assert compat.disabled({compat.ENVIRONMENT: " reactor, write_now "}) == {"reactor", "write_now"}
    compat.check({compat.ENVIRONMENT: "reactor,all"})
    with pytest.raises(ValueError, match="no shortcut named nosuch"):
        compat.check({compat.ENVIRONMENT: "reactor,nosuch"})


# -- Twisted's internals, on Twisted's real objects --------------------------------


class TwistedInternalsTests(SynchronousTestCase):
    def test_a_file_descriptor_counts_its_writes(self) -> None:
        fd = FileDescriptor(MemoryReactor())
        fd.connected = True
        self.assertEqual(buffered(fd), 0)
        self.assertIs(fd._writeDisconnecting, False)
        fd.write(b"abc")
        fd.write(b"de")
        self.assertEqual(buffered(fd), 5)  # _tempDataLen, not yet joined
        fd.stopWriting()

    def test_a_write_side_ends_as_half_close_now_ends_it(self) -> None:
        # what half_close_now does in place of doWrite's last lines: the
        # flags doWrite sets and the method it calls, with these names
        import inspect

        source = inspect.getsource(FileDescriptor.doWrite)
        self.assertIn("self._writeDisconnected = True", source)
        self.assertIn("self._closeWriteConnection()", source)
        self.assertTrue(callable(getattr(tcp.Connection, "_closeWriteConnection", None)))
        fd = FileDescriptor(MemoryReactor())
        self.assertIs(fd._writeDisconnected, False)
        # and a connection's close asks it whether to shut down first
        self.assertIs(tcp.Connection._shouldShutdown, True)
        self.assertIn("self._shouldShutdown", inspect.getsource(tcp.Connection._closeSocket))

    def test_twisted_tcp_connections_say_they_are_plain(self) -> None:
        for kind in (tcp.Server, tcp.Client):
            self.assertIs(kind.TLS, False)
            self.assertTrue(issubclass(kind, FileDescriptor))

    def test_tls_holds_writes_before_its_handshake(self) -> None:
        from twisted.internet.ssl import optionsForClientTLS
        from twisted.protocols.tls import TLSMemoryBIOFactory

        factory = TLSMemoryBIOFactory(optionsForClientTLS("example.com"), True, Factory.forProtocol(Protocol))
        tls = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        tls.makeConnection(StringTransport())
        tls.write(b"x" * 100)  # small writes wait for the reactor's next turn
        self.assertEqual(app_buffered(tls), 100)
        tls._aggregator.flush()  # then, before the handshake, in _appSendBuffer
        self.assertEqual(tls._appSendBuffer, [b"x" * 100])
        self.assertEqual(app_buffered(tls), 100)

    def test_endpoint_factories_hold_their_connector_and_deferred(self) -> None:
        reactor = MemoryReactor()
        d = TCP4ClientEndpoint(reactor, "127.0.0.1", 1).connect(Factory.forProtocol(Protocol))
        wrapping = reactor.tcpClients[0][2]
        # Twisted's own connector, as connectTCP makes it (not connected here)
        connector = tcp.Connector("127.0.0.1", 1, wrapping, 30, None, reactor)
        wrapping.startedConnecting(connector)
        self.assertIs(wrapping._connector, connector)
        self.assertIsInstance(wrapping._onConnection, defer.Deferred)
        protocol = wrapping.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        layer = SimpleNamespace(connector=connector)
        connector.transport = layer  # type: ignore[assignment]
        protocol.makeConnection(StringTransport())
        self.successResultOf(d)
        release_connector(layer)
        self.assertIsNone(connector.transport)
        self.assertIsNone(wrapping._connector)
        self.assertIsNone(wrapping._onConnection)

    def test_the_http_channel_holds_what_follows_a_head(self) -> None:
        class Waiting(Request):
            def process(self) -> None:
                pass  # never finishes: the channel holds what follows

        channel = HTTPChannel()
        channel.requestFactory = Waiting
        channel.makeConnection(StringTransport())
        channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\x82\x85early")
        self.assertEqual(early_bytes(channel), b"\x82\x85early")
        channel.connectionLost(None)

    def test_the_epoll_reactor_has_what_the_quiet_one_reads(self) -> None:
        reactor = QuietEPollReactor()
        try:
            self.assertTrue(callable(reactor._doReadOrWrite))
            self.assertIsInstance(reactor._selectables, dict)
            self.assertTrue(callable(reactor._poller.poll))
        finally:
            reactor._poller.close()
            reactor.waker.connectionLost(None)

    def test_xish_calls_the_overridden_callbacks(self) -> None:
        seen: list[str] = []

        class Stream(BoundedExpatStream):
            def start_element(self, name: str, attrs: dict[str, str]) -> None:
                seen.append(f"<{name.split(' ')[-1]}")

            def end_element(self, name: str) -> None:
                seen.append(f"</{name.split(' ')[-1]}")

        stream = Stream()
        elements: list[Any] = []
        stream.DocumentStartEvent = lambda root: None
        stream.ElementEvent = elements.append
        stream.DocumentEndEvent = lambda: None
        stream.parse(b"<r><a>text</a></r>")
        self.assertEqual(seen, ["<r", "<a", "</a", "</r"])
        self.assertEqual(str(elements[0]), "text")  # xish's own text handling


# -- autobahn's internals ----------------------------------------------------------


class AutobahnInternalsTests(SynchronousTestCase):
    def test_the_private_methods_the_legs_override_or_call(self) -> None:
        for name in (
            "_dataReceived",
            "_onMessage",
            "_connectionMade",
            "_max_message_size_exceeded",
            "_closeConnection",
        ):
            self.assertTrue(callable(getattr(WebSocketServerProtocol, name)), name)
        # autobahn's dataReceived and onMessageEnd go through them
        self.assertIn(
            "self._dataReceived(", inspect.getsource(autobahn_twisted.WebSocketAdapterProtocol.dataReceived)
        )
        self.assertIn("self._onMessage(", inspect.getsource(autobahn_protocol.WebSocketProtocol.onMessageEnd))

    def test_the_handshake_answer_reads_the_key(self) -> None:
        source = inspect.getsource(autobahn_protocol.WebSocketServerProtocol.succeedHandshake)
        self.assertIn("self._wskey", source)
        self.assertIn("self.websocket_protocols", source)

    def test_options_on_the_class_are_not_copied(self) -> None:
        factory = WebSocketServerFactory()
        factory.setProtocolOptions(
            maxMessagePayloadSize=12345, perMessageCompressionAccept=lambda offers: None
        )
        options = class_options(factory, WebSocketServerProtocol)
        self.assertEqual(options["maxMessagePayloadSize"], 12345)
        self.assertEqual(options["CONFIG_ATTRS"], ())
        # every limit tunnelgw sets is among what autobahn copies
        for name in (
            "maxFramePayloadSize",
            "maxMessagePayloadSize",
            "closeHandshakeTimeout",
            "autoPingInterval",
        ):
            self.assertIn(name, WebSocketServerProtocol.CONFIG_ATTRS)
        self.assertIn(
            "self.CONFIG_ATTRS", inspect.getsource(autobahn_protocol.WebSocketProtocol._connectionMade)
        )
        protocol = type("P", (WebSocketServerProtocol,), options)()
        self.assertIsNone(protocol.perMessageCompressionAccept([]))  # still a plain function

    def test_the_lazy_debug_names_exist_and_keep_their_text(self) -> None:
        for module, name in LAZY_NAMES:
            self.assertTrue(callable(getattr(module, name)), f"{module.__name__}.{name}")
        method = self.test_the_lazy_debug_names_exist_and_keep_their_text
        for module in (autobahn_protocol, autobahn_twisted):
            self.assertEqual(str(module.hltype(method)), autobahn.util.hltype(method))
            self.assertEqual(f"{module.hlval(1234)}", autobahn.util.hlval(1234))
        config = {"maxFramePayloadSize": 65536, "versions": [13]}
        self.assertEqual(str(autobahn_protocol.pformat(config)), pprint.pformat(config))
        self.assertEqual(repr(autobahn_protocol.pformat(config)), pprint.pformat(config))

    def test_nothing_is_formatted_unless_logged(self) -> None:
        class Loud:
            formatted = 0

            def __format__(self, spec: str) -> str:
                Loud.formatted += 1
                return "loud"

        value = autobahn_twisted.hlval(Loud())
        self.assertEqual(Loud.formatted, 0)
        self.assertEqual(str(value), "loud")
        self.assertEqual(Loud.formatted, 1)

    def test_frames_are_unmasked_by_the_factory_the_shortcut_replaces(self) -> None:
        """
        autobahn reads C{create_xor_masker} from its protocol module for
        every masked frame it parses; the shortcut's masker unmasks as
        NVX's does, a payload in one piece or in many.
        """
        import os

        # autobahn's own (NVX's where it is built, pure Python otherwise)
        from autobahn.websocket.xormasker import create_xor_masker as nvx_masker

        self.assertIn("self.current_frame_masker = create_xor_masker(", inspect.getsource(autobahn_protocol))
        factory = autobahn_protocol.create_xor_masker
        self.assertTrue(getattr(factory, "small_masks", False))  # installed with the server leg
        self.assertIsInstance(factory(b"abcd", SMALL_FRAME - 1), SmallMasker)
        self.assertNotIsInstance(factory(b"abcd", SMALL_FRAME), SmallMasker)
        for size in (1, 3, 4, 5, 32, 125, 1000, SMALL_FRAME - 1):
            mask, data = os.urandom(4), os.urandom(size)
            cuts = sorted({0, size, *(int.from_bytes(os.urandom(2), "big") % size for _ in range(3))})
            ours, theirs = SmallMasker(mask), nvx_masker(mask, size)
            pieces = [data[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]
            self.assertEqual(b"".join(ours.process(p) for p in pieces), theirs.process(data))
            self.assertEqual(ours.pointer(), size)
        for size in (0, 1, 5, SMALL_FRAME - 1, SMALL_FRAME, 70000):  # a whole payload, either side
            mask, data = os.urandom(4), os.urandom(size)
            self.assertEqual(unmask(mask, data), nvx_masker(mask, size).process(data) if size else b"")

    def test_text_is_validated_by_the_class_the_shortcut_replaces(self) -> None:
        """
        autobahn makes its UTF-8 validators from the C{Utf8Validator} of
        its protocol module; the shortcut's answers as NVX's does, piece
        by piece: valid so far, ends on a code point.
        """
        import random

        # autobahn's own (NVX's where it is built, pure Python otherwise)
        from autobahn.websocket.utf8validator import Utf8Validator as NvxValidator

        source = inspect.getsource(autobahn_protocol)
        self.assertIn("self.utf8validator = Utf8Validator()", source)
        self.assertIn("self.utf8validator.validate(payload)", source)
        self.assertIs(autobahn_protocol.Utf8Validator, TextValidator)  # installed with the server leg
        rng = random.Random(6455)
        texts = ["ascii only", "é日本語🎉", "a\u0000b", "\U0010ffff"]
        # bytes that are no UTF-8: surrogates, overlong forms, past U+10FFFF, lone bytes
        bad = [b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80", b"\xff", b"\x80", b"\xe0\x80\xaf"]
        for _ in range(400):
            data = b"".join(
                rng.choice(texts).encode() if rng.random() < 0.8 else rng.choice(bad)
                for _ in range(rng.randint(1, 5))
            )
            cuts = sorted({0, len(data), *(rng.randrange(len(data) + 1) for _ in range(3))})
            ours, theirs = TextValidator(), NvxValidator()
            for a, b in zip(cuts, cuts[1:], strict=False):
                mine, nvx = ours.validate(data[a:b]), theirs.validate(data[a:b])
                self.assertEqual(mine[:2], nvx[:2], (data, a, b))
                if not nvx[0]:
                    # where: the bad sequence's start, NVX's its bad byte
                    self.assertIn(nvx[3] - mine[3], range(4), (data, a, b))
                    break
        ours.reset()
        self.assertEqual(ours.validate(b"ok"), (True, True, 2, 2))

    def test_what_whole_frames_reads_and_skips(self) -> None:
        # the state it reads, as autobahn has it on an open connection
        protocol = WebSocketServerProtocol()
        protocol.factory = WebSocketServerFactory()
        protocol.makeConnection(StringTransport())
        self.assertIs(reads._OPEN, autobahn_protocol.WebSocketProtocol.STATE_OPEN)
        for name in ("_perMessageCompress", "trackedTimings", "data"):
            self.assertIn(name, vars(protocol), name)
        opened = inspect.getsource(autobahn_protocol.WebSocketServerProtocol.succeedHandshake)
        self.assertIn("self.inside_message = False", opened)
        self.assertIn("self.current_frame = None", opened)
        # a frame it leaves autobahn to end: its length, and what is unmasked
        self.assertEqual(autobahn_protocol.FrameHeader(2, True, 0, 7, b"mask").length, 7)
        self.assertIn(
            "self.current_frame_masker.pointer()", inspect.getsource(WebSocketServerProtocol.processData)
        )
        for name in ("logFrames", "logOctets", "applyMask", "maxFramePayloadSize", "maxMessagePayloadSize",
                     "maskServerFrames", "autoFragmentSize"):  # fmt: skip
            self.assertTrue(hasattr(protocol, name), name)
        for name in ("utf8validateIncoming", "autoPingTimeoutCall", "autoPingRestartOnAnyTraffic"):
            self.assertTrue(hasattr(protocol, name), name)
        self.assertTrue(protocol.factory.isServer)
        self.assertTrue(callable(protocol._cancelAutoPingTimeoutCall))
        self.assertTrue(callable(autobahn_protocol.create_xor_masker))
        self.assertEqual(protocol.utf8validator.validate(b"caf\xc3")[:2], (True, False))
        # the path it skips: every hook is autobahn's method, and a single
        # frame's message goes through them to _onMessage
        for name in reads.HOOKS:
            self.assertTrue(callable(getattr(WebSocketServerProtocol, name)), name)
            self.assertTrue(getattr(WebSocketServerProtocol, name).__module__.startswith("autobahn."), name)
        self.assertIn(
            "self.current_frame = None", inspect.getsource(autobahn_protocol.WebSocketProtocol.onFrameEnd)
        )
        self.assertIn(
            "self.autoPingRestartOnAnyTraffic",
            inspect.getsource(autobahn_protocol.WebSocketProtocol.onFrameEnd),
        )

    def test_the_leftovers_and_the_send_queue(self) -> None:
        protocol = WebSocketServerProtocol()
        protocol.factory = WebSocketServerFactory()
        for name in ("http_response_data", "_wskey", "_transport_details", "send_queue"):
            self.assertIn(name, inspect.getsource(autobahn_protocol) + inspect.getsource(autobahn_twisted))
        protocol.makeConnection(StringTransport())
        self.assertIsInstance(protocol.send_queue, deque)
        self.assertIsNotNone(protocol._transport_details)
        self.assertIn("TunnelWebSocket", repr(TunnelWebSocket))


# -- txaio ----------------------------------------------------------------------------


class TxaioTimerTests(SynchronousTestCase):
    def test_the_batched_timer_truncates_to_the_second(self) -> None:
        clock = task.Clock()
        clock.advance(10.7)
        old = txaio.config.loop
        txaio.config.loop = clock
        self.addCleanup(setattr, txaio.config, "loop", old)
        fired: list[float] = []
        timer = txaio.make_batched_timer(TIMER_GRANULARITY)
        timer.call_later(0.5, lambda: fired.append(clock.seconds()))
        clock.advance(0.3)
        # due at 11.2, fired at 11.0 (int(10.7 + 0.5)): early, hence the
        # second autobahn_seconds adds
        self.assertEqual(fired, [11.0])
        fired.clear()
        timer.call_later(autobahn_seconds(0.5), lambda: fired.append(clock.seconds()))
        clock.advance(0.5)
        self.assertEqual(fired, [])
        clock.advance(0.5)
        self.assertEqual(fired, [12.0])
