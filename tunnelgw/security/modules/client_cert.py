"""
C{client_cert}: the TLS client certificate (mTLS).  The certificate was
verified against the listener's C{client_ca} during the TLS handshake; this
module maps it to a user and roles.

Options: C{user_from} (C{cn}, the subject's common name, default; C{email},
the first rfc822Name of the subject alternative names; C{dns}, the first
dNSName), C{roles} (a table of user → roles) and C{default_roles} (roles
every certificate user gets).  A request without a verified certificate
(a listener without client_ca never has one) is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from zope.interface import implementer

from tunnelgw.config.values import Table, strings_value
from tunnelgw.errors import LoginFailed
from tunnelgw.interfaces import ILoginModule, ILoginModuleFactory
from tunnelgw.security import Principal
from tunnelgw.security.modules.base import BaseModule, roles_of

USER_FROM = ("cn", "email", "dns")


@dataclass(frozen=True)
class ClientCertOptions:
    user_from: str
    roles: dict[str, tuple[str, ...]]
    default_roles: tuple[str, ...]


def user_of(certificate: x509.Certificate, user_from: str) -> str | None:
    if user_from == "cn":
        names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(names[0].value) if names else None
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    kind = x509.RFC822Name if user_from == "email" else x509.DNSName
    values = san.get_values_for_type(kind)
    return values[0] if values else None


@implementer(ILoginModule)
class ClientCertModule(BaseModule):
    def authenticate(self) -> tuple[str, x509.Certificate]:
        certificate = self.callbacks.peer_certificate
        if certificate is None:
            raise LoginFailed("no verified client certificate")
        user = user_of(certificate, self.options.user_from)
        if not user:
            raise LoginFailed(f"the client certificate has no {self.options.user_from} to name a user")
        return user, certificate

    def principals(self, result: tuple[str, x509.Certificate]) -> tuple[set[Principal], dict[str, Any]]:
        user, certificate = result
        found = roles_of(self.options.default_roles + self.options.roles.get(user, ()))
        found.add(Principal("user", user))
        return found, {
            "method": "client-certificate",
            "certificate_subject": certificate.subject.rfc4514_string(),
            "certificate_issuer": certificate.issuer.rfc4514_string(),
        }


@implementer(ILoginModuleFactory)
class ClientCertFactory:
    name = "client_cert"

    def parse_config(self, options: dict[str, Any], key: str) -> ClientCertOptions:
        t = Table(options, key)
        user_from = t.choice("user_from", USER_FROM, "cn")
        roles_table = t.table("roles")
        roles = {user: roles_table.require(user, strings_value) for user in list(roles_table._data)}
        parsed = ClientCertOptions(user_from, roles, t.take("default_roles", strings_value, ()))
        t.done()
        return parsed

    def create(self) -> ClientCertModule:
        return ClientCertModule()
