"""
What tunnelgw changes in autobahn's module globals keeps autobahn's text.
"""

from __future__ import annotations

import pprint

import autobahn.twisted.websocket as autobahn_twisted
import autobahn.util
import autobahn.websocket.protocol as autobahn_protocol
from twisted.trial.unittest import SynchronousTestCase

import tunnelgw.websocket.server  # noqa: F401  (installs the lazy debug arguments)


class LazyDebugArgumentsTests(SynchronousTestCase):
    def test_same_text_when_formatted(self) -> None:
        method = self.test_same_text_when_formatted
        for module in (autobahn_protocol, autobahn_twisted):
            self.assertEqual(str(module.hltype(method)), autobahn.util.hltype(method))
            self.assertEqual(f"{module.hlval(1234)}", autobahn.util.hlval(1234))
        config = {"maxFramePayloadSize": 65536, "versions": [13]}
        self.assertEqual(str(autobahn_protocol.pformat(config)), pprint.pformat(config))
        self.assertEqual(repr(autobahn_protocol.pformat(config)), pprint.pformat(config))

    def test_nothing_computed_unless_formatted(self) -> None:
        class Loud:
            formatted = 0

            def __format__(self, spec: str) -> str:
                Loud.formatted += 1
                return "loud"

        value = autobahn_twisted.hlval(Loud())
        self.assertEqual(Loud.formatted, 0)
        self.assertEqual(str(value), "loud")
        self.assertEqual(Loud.formatted, 1)
