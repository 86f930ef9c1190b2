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
        ca = self.ca = CA(self.dir)
        self.cert, self.key = ca.issue("a", ["a.example"])
        self.other_cert, self.other_key = ca.issue("b", ["b.example"])

    def test_a_matching_pair(self) -> None:
        context = context_factory(
            TLSListener("tcp:8443", str(self.cert), str(self.key)), "gateway.tls_listeners[0]"
        )
        connection = ReloadableServerTLS(context).serverConnectionForTLS(None)
        self.assertIsNotNone(connection)

    def test_session_tickets_on_by_default_and_off_when_asked(self) -> None:
        from OpenSSL import SSL

        on = context_factory(TLSListener("tcp:8443", str(self.cert), str(self.key)), "t")
        # set_options(0) answers the options as they are (pyOpenSSL has no getter)
        self.assertFalse(on.set_options(0) & SSL.OP_NO_TICKET)
        off = context_factory(
            TLSListener("tcp:8443", str(self.cert), str(self.key), session_tickets=False), "t"
        )
        self.assertTrue(off.set_options(0) & SSL.OP_NO_TICKET)

    def test_a_key_that_is_not_the_certificates(self) -> None:
        with self.assertRaises(ConfigError) as e:
            context_factory(
                TLSListener("tcp:8443", str(self.cert), str(self.other_key)), "gateway.tls_listeners[0]"
            )
        self.assertIn(
            f"gateway.tls_listeners[0].private_key: {self.other_key} does not go with", str(e.exception)
        )

    def write(self, name: str, data: bytes) -> str:
        path = self.dir / name
        path.write_bytes(data)
        return str(path)

    def refusal(self, private_key: str) -> str:
        with self.assertRaises(ConfigError) as e:
            context_factory(TLSListener("tcp:8443", str(self.cert), private_key), "gateway.tls_listeners[0]")
        return str(e.exception)

    def test_a_key_file_that_is_not_a_key(self) -> None:
        path = self.write(
            "garbage.pem", b"-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n"
        )
        self.assertIn(
            f"gateway.tls_listeners[0].private_key: {path}: not an unencrypted PEM private key",
            self.refusal(path),
        )

    def test_an_encrypted_key(self) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        data = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"the passphrase"),
        )
        path = self.write("encrypted.pem", data)
        message = self.refusal(path)
        self.assertIn(f"{path}: not an unencrypted PEM private key", message)
        self.assertNotIn("the passphrase", message)

    def test_a_key_that_cannot_sign(self) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import x25519

        data = x25519.X25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        path = self.write("x25519.pem", data)
        self.assertIn(f"{path}: a X25519PrivateKey cannot sign a TLS handshake", self.refusal(path))

    def test_no_deprecated_pyopenssl_objects(self) -> None:
        """
        The certificate, its chain and its key reach OpenSSL as
        cryptography's objects: pyOpenSSL warns of its own X509 and PKey
        there, which a later release will refuse.
        """
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            context = context_factory(TLSListener("tcp:8443", str(self.cert), str(self.key)), "t")
            ReloadableServerTLS(context).serverConnectionForTLS(None)
        self.assertEqual([str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)], [])

    def test_the_chain_goes_to_the_client(self) -> None:
        """
        Every certificate after the first in C{certificate} is sent after
        it, in the handshake.
        """
        from OpenSSL import SSL

        chain = self.write("chain.pem", self.cert.read_bytes() + self.ca.cert_path.read_bytes())
        context = context_factory(TLSListener("tcp:8443", chain, str(self.key)), "t")
        server = ReloadableServerTLS(context).serverConnectionForTLS(None)
        server.set_accept_state()
        client = SSL.Connection(SSL.Context(SSL.TLS_METHOD), None)
        client.set_connect_state()
        for _ in range(3):
            for one, other in ((client, server), (server, client)):
                try:
                    one.do_handshake()
                except SSL.WantReadError:
                    pass
                try:
                    other.bio_write(one.bio_read(65536))
                except SSL.WantReadError:
                    pass
        sent = client.get_peer_cert_chain(as_cryptography=True)
        self.assertEqual(
            [c.subject.rfc4514_string() for c in sent or []],
            ["CN=a", "CN=tunnelgw test CA"],
        )
