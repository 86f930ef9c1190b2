"""
TLS listeners' files: read and checked when the configuration is, a key
that is not the certificate's named then rather than at the first client.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.integration.certs import CA
from tunnelgw.config.model import TLSListener
from tunnelgw.errors import ConfigError
from tunnelgw.tls import ReloadableServerTLS, context_factory


class ContextFactoryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp())
        ca = CA(self.dir)
        self.cert, self.key = ca.issue("a", ["a.example"])
        self.other_cert, self.other_key = ca.issue("b", ["b.example"])

    def test_a_matching_pair(self) -> None:
        options = context_factory(
            TLSListener("tcp:8443", str(self.cert), str(self.key)), "gateway.tls_listeners[0]"
        )
        connection = ReloadableServerTLS(options).serverConnectionForTLS(None)
        self.assertIsNotNone(connection)

    def test_session_tickets_on_by_default_and_off_when_asked(self) -> None:
        from OpenSSL import SSL

        on = context_factory(TLSListener("tcp:8443", str(self.cert), str(self.key)), "t")
        # set_options(0) answers the options as they are (pyOpenSSL has no getter)
        self.assertFalse(on.getContext().set_options(0) & SSL.OP_NO_TICKET)
        off = context_factory(
            TLSListener("tcp:8443", str(self.cert), str(self.key), session_tickets=False), "t"
        )
        self.assertTrue(off.getContext().set_options(0) & SSL.OP_NO_TICKET)

    def test_a_key_that_is_not_the_certificates(self) -> None:
        with self.assertRaises(ConfigError) as e:
            context_factory(
                TLSListener("tcp:8443", str(self.cert), str(self.other_key)), "gateway.tls_listeners[0]"
            )
        self.assertIn(
            f"gateway.tls_listeners[0].private_key: {self.other_key} does not go with", str(e.exception)
        )
