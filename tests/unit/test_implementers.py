"""
Every class of tunnelgw that declares an interface (C{@implementer})
provides its methods with the interface's signatures: checked class by
class with C{verifyClass}, found by importing every module, so that a new
implementation is covered without a test of its own.  (Attributes, which
only instances carry, are checked by the C{verifyObject} tests of
test_interfaces.py.)
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

from zope.interface import implementedBy
from zope.interface.verify import verifyClass

import tunnelgw


def implementers() -> list[tuple[type, object]]:
    found = []
    for info in pkgutil.walk_packages(tunnelgw.__path__, "tunnelgw."):
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__:
                continue
            for interface in implementedBy(cls).declared:
                found.append((cls, interface))
    return found


IMPLEMENTERS = implementers()


def test_the_scan_finds_them() -> None:
    names = {cls.__name__ for cls, _ in IMPLEMENTERS}
    assert {"Tunnel", "MemoryLimitStore", "RealmAuthenticator", "RfbAdapterFactory", "Valve"} <= names
    assert len(names) >= 30


@pytest.mark.parametrize(
    ("cls", "interface"),
    IMPLEMENTERS,
    ids=[f"{c.__module__}.{c.__name__}:{i.__name__}" for c, i in IMPLEMENTERS],
)
def test_declared_interfaces_are_implemented(cls: type, interface: object) -> None:
    assert verifyClass(interface, cls)  # type: ignore[arg-type]
