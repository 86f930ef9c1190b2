"""
TLS listeners that endpoint strings cannot describe: client certificates
(mTLS).  Each C{[[gateway.tls_listeners]]} entry wraps a server endpoint
(C{endpoint = "tcp:8443:interface=0.0.0.0"}) in TLS with its certificate
chain and key, and, with C{client_ca}, asks clients for a certificate that
must chain to one of those CAs (verified by OpenSSL during the handshake;
a certificate from another CA fails the handshake).
"""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from OpenSSL import SSL, crypto

from twisted.internet import ssl
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from zope.interface import implementer

from tunnelgw.config.model import TLSListener
from tunnelgw.config.values import ConfigError, file_bytes

__all__ = ["ReloadableServerTLS", "TLSListener", "context_factory"]

_SigningKey = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
    | dsa.DSAPrivateKey
)
"""The private keys a server certificate's key can be (what pyOpenSSL takes)."""


def _certificates(key: str, path: str) -> list[x509.Certificate]:
    data = file_bytes(key, path)  # its ConfigError names the key and the path already
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise ConfigError(f"{key}: {path}: {e}") from None
    return certificates


def _private_key(key: str, path: str) -> _SigningKey:
    data = file_bytes(key, path)
    try:
        private_key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        # TypeError: encrypted (the gateway starts unattended: no passphrase)
        raise ConfigError(f"{key}: {path}: not an unencrypted PEM private key ({e})") from None
    if not isinstance(private_key, _SigningKey):
        raise ConfigError(f"{key}: {path}: a {type(private_key).__name__} cannot sign a TLS handshake")
    return private_key


def context_factory(listener: TLSListener, key: str) -> SSL.Context:
    """
    The listener's TLS context: Twisted's settings (L{ssl.CertificateOptions}),
    then its certificate, chain and key.

    @raise ConfigError: a file is missing or not PEM, or the key is not the
        certificate's; C{key} names the entry.
    """
    chain = _certificates(f"{key}.certificate", listener.certificate)
    private_key = _private_key(f"{key}.private_key", listener.private_key)
    verification: dict[str, Any] = {}
    if listener.client_ca is not None:
        # verify + caCerts, not trustRoot: with trustRoot Twisted always
        # requires a certificate, and here it may be optional.
        authorities = _certificates(f"{key}.client_ca", listener.client_ca)
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
        context.use_privatekey(private_key)
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
