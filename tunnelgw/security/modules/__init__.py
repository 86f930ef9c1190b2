"""
The login modules shipped with tunnelgw, by configuration name.
"""

from __future__ import annotations

from tunnelgw.interfaces import ILoginModuleFactory
from tunnelgw.security.modules.address import AddressFilterFactory
from tunnelgw.security.modules.anonymous import AnonymousFactory
from tunnelgw.security.modules.assertion import AssertionFactory
from tunnelgw.security.modules.client_cert import ClientCertFactory
from tunnelgw.security.modules.introspection import IntrospectionFactory
from tunnelgw.security.modules.jwt import JWTFactory
from tunnelgw.security.modules.password_file import PasswordFileFactory

__all__ = ["LOGIN_MODULES"]

LOGIN_MODULES: dict[str, ILoginModuleFactory] = {
    factory.name: factory
    for factory in (
        AnonymousFactory(),
        AddressFilterFactory(),
        PasswordFileFactory(),
        JWTFactory(),
        ClientCertFactory(),
        IntrospectionFactory(),
        AssertionFactory(),
    )
}
