"""
The public keys a login module verifies signatures with (the C{key_file}
of C{jwt} and of each C{assertion} issuer): every public key of a PEM
file, parsed once when the configuration is loaded, each checked against
the algorithms the module allows.  A file of two keys lets a signer move
to a new key without a moment when the gateway trusts neither: the old
and the new are both accepted until the old one is taken out.

A file that holds no public key, a private key, or a key that none of the
algorithms uses is refused with the configuration; a token is tried
against the keys of its own algorithm's kind, in the file's order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import jwt as pyjwt
from cryptography.hazmat.primitives import serialization

from tunnelgw.config.values import ConfigError, file_bytes
from tunnelgw.tls import key_kind

__all__ = ["decode", "public_keys"]

_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.S)
_PUBLIC = (b"PUBLIC KEY", b"RSA PUBLIC KEY")
_ALGORITHMS = pyjwt.algorithms.get_default_algorithms()  # stateless: made once, not per login


def _fits(algorithm: Any, public_key: Any) -> bool:
    """Whether pyjwt's C{algorithm} takes C{public_key} (its kind of key)."""
    try:
        algorithm.prepare_key(public_key)
    except (pyjwt.InvalidKeyError, TypeError, ValueError):
        return False
    return True


def public_keys(key: str, path: str, algorithms: Sequence[str]) -> tuple[Any, ...]:
    """
    Every public key of the PEM file at C{path}, in its order.

    @raise ConfigError: the file cannot be read, holds no PEM public key,
        holds anything else (a private key, a certificate), or a key that
        none of C{algorithms} takes (C{key} names the entry).
    """
    data = file_bytes(key, path)
    blocks = list(_PEM.finditer(data))
    if not blocks:
        raise ConfigError(f"{key}: {path}: no PEM public key")
    allowed = [_ALGORITHMS[name] for name in algorithms if name in _ALGORITHMS]
    found = []
    for block in blocks:
        kind = block.group(1)
        if kind not in _PUBLIC:
            what = "a private key" if b"PRIVATE" in kind else f"a {kind.decode('ascii').lower()}"
            raise ConfigError(f"{key}: {path}: {what}; give the public key only")
        try:
            public_key = serialization.load_pem_public_key(block.group(0))
        except ValueError as e:
            raise ConfigError(f"{key}: {path}: not a PEM public key ({e})") from None
        if not any(_fits(algorithm, public_key) for algorithm in allowed):
            raise ConfigError(
                f"{key}: {path}: {key_kind(public_key)}, which none of {', '.join(algorithms)} uses"
            )
        found.append(public_key)
    return tuple(found)


def decode(token: str, keys: Sequence[Any], **options: Any) -> dict[str, Any]:
    """
    C{pyjwt.decode(token, key, **options)} with the first of C{keys} whose
    signature holds, among those of the kind the token's algorithm takes
    (C{options["algorithms"]} must allow it).

    @raise pyjwt.InvalidTokenError: as C{pyjwt.decode}; also when no key
        is of the token's algorithm's kind.
    """
    name = pyjwt.get_unverified_header(token).get("alg")
    if not isinstance(name, str) or name not in options["algorithms"] or name not in _ALGORITHMS:
        raise pyjwt.InvalidAlgorithmError("The specified alg value is not allowed")
    fitting = [k for k in keys if _fits(_ALGORITHMS[name], k)]
    if not fitting:
        raise pyjwt.InvalidSignatureError(f"no key for {name}")
    for public_key in fitting[:-1]:
        try:
            claims: dict[str, Any] = pyjwt.decode(token, public_key, **options)
        except pyjwt.InvalidSignatureError:
            continue
        return claims
    last: dict[str, Any] = pyjwt.decode(token, fitting[-1], **options)
    return last
