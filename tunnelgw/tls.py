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
from OpenSSL import SSL, crypto

from twisted.internet import ssl
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from zope.interface import implementer

from tunnelgw.config.model import TLSListener
from tunnelgw.config.values import ConfigError, file_bytes

__all__ = ["ReloadableServerTLS", "TLSListener", "context_factory"]


def _certificates(key: str, path: str) -> list[x509.Certificate]:
    data = file_bytes(key, path)  # its ConfigError names the key and the path already
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise ConfigError(f"{key}: {path}: {e}") from None
    return certificates


def context_factory(listener: TLSListener, key: str) -> ssl.CertificateOptions:
    """
    @raise ConfigError: a file is missing or not PEM; C{key} names the entry.
    """
    chain = _certificates(f"{key}.certificate", listener.certificate)
    try:
        private_key = crypto.load_privatekey(
            crypto.FILETYPE_PEM, file_bytes(f"{key}.private_key", listener.private_key)
        )
    except crypto.Error as e:
        raise ConfigError(f"{key}.private_key: {listener.private_key}: not a PEM private key ({e})") from None
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
    options = ssl.CertificateOptions(
        privateKey=private_key,
        certificate=crypto.X509.from_cryptography(chain[0]),
        extraCertChain=[crypto.X509.from_cryptography(c) for c in chain[1:]],
        # the ticket keys are the context's own, made with it: a reload
        # (a new context) changes them, and a ticket works only on the
        # process that issued it (elsewhere: a full handshake)
        enableSessionTickets=listener.session_tickets,
        **verification,
    )
    try:
        options.getContext()  # now, not at the first client: a key that is not the certificate's
    except SSL.Error as e:
        raise ConfigError(
            f"{key}.private_key: {listener.private_key} does not go with {listener.certificate} ({e})"
        ) from None
    return options


@implementer(IOpenSSLServerConnectionCreator)
class ReloadableServerTLS:
    """
    A TLS listener's certificate, key and client CAs, which a reload
    replaces (C{options}): each new connection is set up with the current
    ones; established connections keep theirs.  What Twisted does with
    L{ssl.CertificateOptions} itself (a connection on its context).
    """

    def __init__(self, options: ssl.CertificateOptions) -> None:
        self.options = options

    def serverConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:  # noqa: N802, N803
        return SSL.Connection(self.options.getContext(), None)
