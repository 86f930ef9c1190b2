"""
TLS listeners that endpoint strings cannot describe: client certificates
(mTLS).  Each C{[[gateway.tls_listeners]]} entry wraps a server endpoint
(C{endpoint = "tcp:8443:interface=0.0.0.0"}) in TLS with its certificate
chain and key, and, with C{client_ca}, asks clients for a certificate that
must chain to one of those CAs (verified by OpenSSL during the handshake;
a certificate from another CA fails the handshake).

And the gateway's own TLS clients (L{client_tls}: a chained or linked
gateway, Redis, an XMPP server): every CA of a CA file trusted, not only
its first (a bundle of an old and a new root while one replaces the
other), and a client certificate's whole chain presented.
"""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519
from OpenSSL import SSL, crypto

from twisted.internet import ssl
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IOpenSSLServerConnectionCreator
from zope.interface import implementer

from tunnelgw.config.model import TLSListener
from tunnelgw.config.values import ConfigError, file_bytes

__all__ = [
    "ReloadableServerTLS",
    "TLSListener",
    "certificates",
    "client_tls",
    "context_factory",
    "key_kind",
    "private_key",
]

_SigningKey = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
    | dsa.DSAPrivateKey
)
"""The private keys a server certificate's key can be (what pyOpenSSL takes)."""


def certificates(key: str, path: str) -> list[x509.Certificate]:
    """
    Every certificate of the PEM file at C{path}, in its order.

    @raise ConfigError: the file is missing or holds no certificate
        (C{key} names the entry).
    """
    data = file_bytes(key, path)  # its ConfigError names the key and the path already
    try:
        found = x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise ConfigError(f"{key}: {path}: {e}") from None
    return found


def private_key(key: str, path: str) -> _SigningKey:
    """
    The unencrypted PEM private key at C{path}, one that can sign a TLS
    handshake.

    @raise ConfigError: it is missing, encrypted, not a key or cannot sign.
    """
    data = file_bytes(key, path)
    try:
        loaded = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        # TypeError: encrypted (the gateway starts unattended: no passphrase)
        raise ConfigError(f"{key}: {path}: not an unencrypted PEM private key ({e})") from None
    if not isinstance(loaded, _SigningKey):
        raise ConfigError(f"{key}: {path}: {key_kind(loaded)} cannot sign a TLS handshake")
    return loaded


def context_factory(listener: TLSListener, key: str) -> SSL.Context:
    """
    The listener's TLS context: Twisted's settings (L{ssl.CertificateOptions}),
    then its certificate, chain and key.

    @raise ConfigError: a file is missing or not PEM, or the key is not the
        certificate's; C{key} names the entry.
    """
    chain = certificates(f"{key}.certificate", listener.certificate)
    signing_key = private_key(f"{key}.private_key", listener.private_key)
    verification: dict[str, Any] = {}
    if listener.client_ca is not None:
        # verify + caCerts, not trustRoot: with trustRoot Twisted always
        # requires a certificate, and here it may be optional.
        authorities = certificates(f"{key}.client_ca", listener.client_ca)
        verification = {
            "verify": True,
            "caCerts": [crypto.X509.from_cryptography(c) for c in authorities],
            "requireCertificate": listener.require_client_certificate,
        }
    context = ssl.CertificateOptions(
        # the ticket keys are the context's own, made with it: a reload
        # (a new context) changes them, and a ticket works only on the
        # process that issued it (elsewhere: a full handshake)
        enableSessionTickets=listener.session_tickets,
        **verification,
    ).getContext()
    # cryptography's certificates and key, which pyOpenSSL takes since 24.3
    # (its own X509 and PKey, all CertificateOptions takes, are deprecated
    # there); checked now, not at the first client
    context.use_certificate(chain[0])
    for certificate in chain[1:]:
        context.add_extra_chain_cert(certificate)
    try:
        context.use_privatekey(signing_key)
        context.check_privatekey()
    except SSL.Error as e:
        raise ConfigError(
            f"{key}.private_key: {listener.private_key} does not go with {listener.certificate} ({e})"
        ) from None
    return context


@implementer(IOpenSSLServerConnectionCreator)
class ReloadableServerTLS:
    """
    A TLS listener's context (its certificate, key and client CAs), which
    a reload replaces (C{context}): each new connection is set up with the
    current one; established connections keep theirs.  What Twisted does
    with L{ssl.CertificateOptions} itself (a connection on its context).
    """

    def __init__(self, context: SSL.Context) -> None:
        self.context = context

    def serverConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:  # noqa: N802, N803
        return SSL.Connection(self.context, None)


def client_tls(
    server_name: str,
    authorities: list[x509.Certificate] | None,
    chain: list[x509.Certificate] | None = None,
    signing_key: _SigningKey | None = None,
    key: str = "",
) -> IOpenSSLClientConnectionCreator:
    """
    A TLS client's connection creator (Twisted's L{ssl.optionsForClientTLS}:
    the peer's certificate verified and its name checked with
    service-identity): trusting every certificate of C{authorities}, or
    the platform's trust store without them; presenting C{chain} (the
    leaf first, the rest sent after it) with C{signing_key} when given.

    @raise ConfigError: the key does not go with the chain's first
        certificate (C{key} names the entry).
    """
    trust: Any = (
        ssl.trustRootFromCertificates(
            [ssl.Certificate(crypto.X509.from_cryptography(c)) for c in authorities]
        )
        if authorities
        else ssl.platformTrust()
    )
    identity: dict[str, Any] = {}
    if chain and signing_key is not None:
        # checked now: Twisted makes the context at the first connection
        if _public(chain[0].public_key()) != _public(signing_key.public_key()):
            raise ConfigError(f"{key}: the client key does not go with the client certificate")
        # cryptography's objects, which pyOpenSSL takes since 24.3 (its own,
        # what ssl.PrivateCertificate holds, are deprecated there)
        identity = {"certificate": chain[0], "privateKey": signing_key, "extraCertChain": chain[1:]}
    creator: IOpenSSLClientConnectionCreator = ssl.optionsForClientTLS(
        server_name, trustRoot=trust, extraCertificateOptions=identity
    )
    return creator


def _public(public_key: Any) -> bytes:
    return bytes(
        public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def key_kind(key: Any) -> str:
    """C{key} (public or private) as an error message names it: "an EC P-256 key"."""
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return f"an EC {key.curve.name} key"
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return f"an RSA {key.key_size}-bit key"
    for kind, name in (
        ((ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey), "an Ed25519 key"),
        ((ed448.Ed448PrivateKey, ed448.Ed448PublicKey), "an Ed448 key"),
        ((dsa.DSAPrivateKey, dsa.DSAPublicKey), "a DSA key"),
        ((x25519.X25519PrivateKey, x25519.X25519PublicKey), "an X25519 key"),
        ((x448.X448PrivateKey, x448.X448PublicKey), "an X448 key"),
    ):
        if isinstance(key, kind):
            return name
    return f"a {type(key).__name__}"
