"""
TLS listeners' files: read and checked when the configuration is, a key
that is not the certificate's named then rather than at the first client.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

from OpenSSL import SSL
from service_identity import VerificationError

from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.task import Clock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.test.iosim import connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import alsoProvides

from tests.integration.certs import CA
from tunnelgw.adapters.xmpp.factory import XmppAdapterFactory
from tunnelgw.cluster.redis import redis_tls
from tunnelgw.config.model import ClusterConfig, TLSListener
from tunnelgw.config.operations import cluster_config
from tunnelgw.config.values import Table
from tunnelgw.errors import ConfigError
from tunnelgw.front.forward import Forwarder
from tunnelgw.front.sessions import FallbackSessions
from tunnelgw.tls import ReloadableServerTLS, certificates, client_tls, context_factory, private_key
from tunnelgw.upstream.chain import client_tls as chain_client_tls


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
        self.assertIn(f"{path}: an X25519 key cannot sign a TLS handshake", self.refusal(path))

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


class _Ends(Protocol):
    """An end of a TLS connection in memory: whether its handshake completed, why it was lost."""

    completed = False
    lost: Failure | None = None

    def handshakeCompleted(self) -> None:  # noqa: N802
        self.completed = True

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        self.lost = reason


def _handshake(server: SSL.Context, creator: Any) -> _Ends:
    """
    A TLS handshake in memory between a server on C{server} and a client
    made by C{creator}; once nothing moves, the client's end, completed
    only if the server's completed too (in TLS 1.3 the client finishes
    first, before the server checks its certificate).
    """
    client_end, server_end = _Ends(), _Ends()
    alsoProvides(client_end, IHandshakeListener)
    alsoProvides(server_end, IHandshakeListener)
    servers = TLSMemoryBIOFactory(ReloadableServerTLS(server), False, Factory.forProtocol(lambda: server_end))
    clients = TLSMemoryBIOFactory(creator, True, Factory.forProtocol(lambda: client_end))
    with warnings.catch_warnings():
        # service-identity 24.1 (the declared floor) reads the certificate
        # with pyOpenSSL calls that pyOpenSSL deprecates; later ones do not
        warnings.filterwarnings("ignore", "This API is deprecated", DeprecationWarning, "service_identity")
        _, _, pump = connectedServerAndClient(
            lambda: servers.buildProtocol(None), lambda: clients.buildProtocol(None)
        )
        pump.flush()
    client_end.completed = client_end.completed and server_end.completed
    return client_end


class ClientTLSTests(SynchronousTestCase):
    """
    L{client_tls}, and the TLS clients built with it (a chained or linked
    gateway, Redis, an XMPP server).
    """

    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp())
        (self.dir / "old").mkdir()
        (self.dir / "new").mkdir()
        self.old, self.new = CA(self.dir / "old", "old root"), CA(self.dir / "new", "new root")
        cert, key = self.new.issue("server", ["inner.example"])
        self.server = context_factory(TLSListener("tcp:8443", str(cert), str(key)), "t")
        self.bundle = self.dir / "bundle.pem"
        self.bundle.write_bytes(self.old.cert_path.read_bytes() + self.new.cert_path.read_bytes())

    def requiring_client_certificates(self, ca: CA) -> SSL.Context:
        cert, key = self.new.issue("server", ["inner.example"])
        listener = TLSListener(
            "tcp:8443", str(cert), str(key), client_ca=str(ca.cert_path), require_client_certificate=True
        )
        return context_factory(listener, "t")

    def test_every_ca_of_a_bundle_is_trusted(self) -> None:
        """
        A server whose certificate the second CA of the file signed is
        trusted (a bundle of an old and a new root while one replaces the
        other): not only the first.
        """
        creator = client_tls("inner.example", certificates("ca", str(self.bundle)))
        end = _handshake(self.server, creator)
        self.assertTrue(end.completed)

    def test_a_ca_not_in_the_file_is_not_trusted(self) -> None:
        creator = client_tls("inner.example", certificates("ca", str(self.old.cert_path)))
        end = _handshake(self.server, creator)
        self.assertFalse(end.completed)
        assert end.lost is not None
        self.assertTrue(end.lost.check(SSL.Error))

    def test_the_name_is_checked(self) -> None:
        creator = client_tls("other.example", certificates("ca", str(self.bundle)))
        end = _handshake(self.server, creator)
        assert end.lost is not None
        self.assertTrue(end.lost.check(VerificationError))

    def test_the_client_certificates_whole_chain_is_presented(self) -> None:
        """
        A client certificate from an intermediate CA reaches a server that
        trusts the root only when the intermediate goes with it: every
        certificate of the file is sent, the leaf first.
        """
        (self.dir / "intermediate").mkdir()
        intermediate = CA(self.dir / "intermediate", "intermediate", issuer=self.old)
        cert, key = intermediate.issue("outer", [])
        chain = self.dir / "chain.pem"
        chain.write_bytes(cert.read_bytes() + intermediate.cert_path.read_bytes())
        server = self.requiring_client_certificates(self.old)
        authorities = certificates("ca", str(self.new.cert_path))
        signing_key = private_key("client_key", str(key))

        leaf_only = client_tls("inner.example", authorities, certificates("c", str(cert)), signing_key)
        self.assertFalse(_handshake(server, leaf_only).completed)
        whole = client_tls("inner.example", authorities, certificates("c", str(chain)), signing_key)
        self.assertTrue(_handshake(server, whole).completed)

    def test_a_key_that_is_not_the_certificates(self) -> None:
        cert, _ = self.new.issue("a", [])
        _, other_key = self.new.issue("b", [])
        with self.assertRaisesRegex(ConfigError, "^s.chain.client_key: the client key does not go with"):
            client_tls(
                "inner.example",
                None,
                certificates("c", str(cert)),
                private_key("k", str(other_key)),
                "s.chain.client_key",
            )

    def test_no_deprecated_pyopenssl_objects(self) -> None:
        """The client certificate and key reach OpenSSL as cryptography's objects."""
        cert, key = self.new.issue("outer", [])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            creator = client_tls(
                "inner.example",
                certificates("ca", str(self.bundle)),
                certificates("c", str(cert)),
                private_key("k", str(key)),
            )
            self.assertTrue(_handshake(self.server, creator).completed)
        # (older service-identity warns of pyOpenSSL calls of its own)
        ours = [str(w.message) for w in caught if "Passing pyOpenSSL" in str(w.message)]
        self.assertEqual(ours, [])

    def test_a_chained_gateway_trusts_a_bundle_and_presents_its_chain(self) -> None:
        """The C{chain} adapter's C{ca}, C{client_certificate} and C{client_key}."""
        (self.dir / "intermediate").mkdir()
        intermediate = CA(self.dir / "intermediate", "intermediate", issuer=self.old)
        cert, key = intermediate.issue("outer", [])
        chain = self.dir / "chain.pem"
        chain.write_bytes(cert.read_bytes() + intermediate.cert_path.read_bytes())
        options = {
            "client_certificate": str(chain),
            "client_key": str(key),
            "ca": str(self.bundle),
            "server_name": "inner.example",
        }
        creator = chain_client_tls(Table(options, "services.s.chain"))
        self.assertTrue(_handshake(self.requiring_client_certificates(self.old), creator).completed)

    def test_an_xmpp_backend_ca_bundle(self) -> None:
        options = XmppAdapterFactory().parse_options(
            {"domain": "inner.example", "backend_ca": str(self.bundle)}, "services.x.xmpp"
        )
        self.assertTrue(_handshake(self.server, options.tls_creator).completed)

    def test_a_redis_ca_bundle(self) -> None:
        config = ClusterConfig("rediss://inner.example:6380", ca=str(self.bundle))
        self.assertTrue(_handshake(self.server, redis_tls(config)).completed)

    def test_a_redis_ca_file_without_a_certificate(self) -> None:
        empty = self.dir / "empty.pem"
        empty.write_text("")
        with self.assertRaisesRegex(ConfigError, f"^cluster.ca: {empty}: "):
            cluster_config(Table({"redis": "rediss://r:6380", "ca": str(empty)}, "cluster"))

    def test_an_instance_trusts_the_advertise_ca(self) -> None:
        """
        A fallback request passed to another instance over C{https://}:
        its certificate chains to C{[cluster] advertise_ca}, and is issued
        to the host of its C{advertise} URL, a name or an address.
        """
        forwarder = Forwarder(Clock(), str(self.bundle))
        creator = forwarder.trust.creatorForNetloc(b"inner.example", 8443)
        self.assertTrue(_handshake(self.server, creator).completed)
        other = forwarder.trust.creatorForNetloc(b"other.example", 8443)
        lost = _handshake(self.server, other).lost
        assert lost is not None
        self.assertTrue(lost.check(VerificationError))
        cert, key = self.new.issue("instance", ["10.0.0.5"])
        by_address = context_factory(TLSListener("tcp:8443", str(cert), str(key)), "t")
        creator = forwarder.trust.creatorForNetloc(b"10.0.0.5", 8443)
        self.assertTrue(_handshake(by_address, creator).completed)

    def test_an_instance_of_another_ca_is_not_trusted(self) -> None:
        forwarder = Forwarder(Clock(), str(self.old.cert_path))
        lost = _handshake(self.server, forwarder.trust.creatorForNetloc(b"inner.example", 8443)).lost
        assert lost is not None
        self.assertTrue(lost.check(SSL.Error))

    def test_without_advertise_ca_the_platform_is_trusted(self) -> None:
        """The system's CAs: a private CA's instance is refused."""
        forwarder = Forwarder(Clock())
        self.assertIsNone(forwarder.trust.authorities)
        self.assertFalse(
            _handshake(self.server, forwarder.trust.creatorForNetloc(b"inner.example", 8443)).completed
        )

    def test_advertise_ca_is_read_at_load(self) -> None:
        empty = self.dir / "empty.pem"
        empty.write_text("")
        table = {"redis": "redis://r:6379", "advertise": "https://10.0.0.5:8443", "advertise_ca": str(empty)}
        with self.assertRaisesRegex(ConfigError, f"^cluster.advertise_ca: {empty}: "):
            cluster_config(Table(table, "cluster"))
        table["advertise_ca"] = str(self.bundle)
        config = cluster_config(Table(table, "cluster"))
        assert config is not None
        self.assertEqual(config.advertise_ca, str(self.bundle))

    def test_a_reload_reads_advertise_ca_again(self) -> None:
        """
        After a reload the forwarder is made anew from the file as it is
        now (rewritten in place here), the old one's kept connections closed.
        """
        sessions = FallbackSessions(10)
        clock = Clock()
        ca = self.dir / "instances.pem"
        ca.write_bytes(self.old.cert_path.read_bytes())
        first = sessions.forwarder(clock, str(ca))
        self.assertIs(sessions.forwarder(clock, str(ca)), first)
        closed: list[bool] = []
        first._pool.closeCachedConnections = lambda: closed.append(True)  # type: ignore[method-assign]
        ca.write_bytes(self.bundle.read_bytes())
        sessions.reload_forwarder()
        self.assertEqual(closed, [True])
        second = sessions.forwarder(clock, str(ca))
        self.assertIsNot(second, first)
        self.assertTrue(
            _handshake(self.server, second.trust.creatorForNetloc(b"inner.example", 8443)).completed
        )
