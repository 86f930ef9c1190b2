"""
What a login module is pointed at: the public keys of its C{key_file}
(L{tunnelgw.security.keys}), a shared secret, the URL credentials go to;
every key of the file, checked when the configuration is loaded, and a
token tried against those of its algorithm's kind.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.unit.test_login_modules import cb, login, token
from tunnelgw.config.values import ConfigError
from tunnelgw.security.jaas import LoginFailed
from tunnelgw.security.keys import decode, public_keys
from tunnelgw.security.modules.introspection import IntrospectionFactory
from tunnelgw.security.modules.jwt import JWTFactory

OLD = ec.generate_private_key(ec.SECP256R1())
NEW = ec.generate_private_key(ec.SECP256R1())
RSA = rsa.generate_private_key(65537, 2048)


def pem(key: Any) -> bytes:
    return bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def written(tmp_path: Path, data: bytes) -> str:
    path = tmp_path / "keys.pem"
    path.write_bytes(data)
    return str(path)


def test_every_key_of_the_file(tmp_path: Path) -> None:
    keys = public_keys("k", written(tmp_path, pem(OLD) + pem(NEW)), ["ES256"])
    assert keys == (OLD.public_key(), NEW.public_key())


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "no PEM public key"),
        (b"not a key at all\n", "no PEM public key"),
        (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "not a PEM public key"),
        (
            OLD.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
            "a private key; give the public key only",
        ),
    ],
)
def test_a_file_of_anything_else(tmp_path: Path, data: bytes, message: str) -> None:
    path = written(tmp_path, pem(NEW) + data if data.startswith(b"-----BEGIN PR") else data)
    with pytest.raises(ConfigError, match=f"^k: {path}: {message}"):
        public_keys("k", path, ["ES256"])


def test_a_key_no_algorithm_uses(tmp_path: Path) -> None:
    path = written(tmp_path, pem(RSA))
    with pytest.raises(
        ConfigError, match=f"^k: {path}: an RSA 2048-bit key, which none of ES256, EdDSA uses"
    ):
        public_keys("k", path, ["ES256", "EdDSA"])


def test_either_key_verifies_and_a_third_does_not() -> None:
    keys = (RSA.public_key(), OLD.public_key(), NEW.public_key())
    checks = {"algorithms": ["ES256", "RS256"], "audience": "a"}
    exp = int(time.time()) + 60
    for signer, algorithm in ((OLD, "ES256"), (NEW, "ES256"), (RSA, "RS256")):
        signed = jwt.encode({"aud": "a", "exp": exp}, signer, algorithm=algorithm)
        assert decode(signed, keys, **checks)["aud"] == "a"
    other = jwt.encode({"aud": "a", "exp": exp}, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256")
    with pytest.raises(jwt.InvalidSignatureError):
        decode(other, keys, **checks)


def test_a_token_of_an_algorithm_not_allowed_or_without_a_key() -> None:
    exp = int(time.time()) + 60
    signed = jwt.encode({"aud": "a", "exp": exp}, RSA, algorithm="RS256")
    with pytest.raises(jwt.InvalidAlgorithmError):
        decode(signed, (RSA.public_key(),), algorithms=["ES256"], audience="a")
    with pytest.raises(jwt.InvalidSignatureError, match="no key for RS256"):
        decode(signed, (OLD.public_key(),), algorithms=["ES256", "RS256"], audience="a")


def options(path: str, algorithms: list[str]) -> dict[str, Any]:
    return {"algorithms": algorithms, "key_file": path, "audience": "tunnelgw", "issuer": "https://idp"}


def test_jwt_with_two_keys_while_the_issuer_moves(tmp_path: Path) -> None:
    config = options(written(tmp_path, pem(OLD) + pem(NEW)), ["ES256"])
    for key in (OLD, NEW):
        assert login(JWTFactory(), config, cb(bearer=token(key))).user == "alice"
    with pytest.raises(LoginFailed, match="invalid token: Signature verification failed"):
        login(JWTFactory(), config, cb(bearer=token(ec.generate_private_key(ec.SECP256R1()))))


def test_jwt_key_file_refused_with_the_configuration(tmp_path: Path) -> None:
    """
    A key_file that is not a public key is refused when the configuration
    is loaded (it failed each login with an internal error before).
    """
    path = written(tmp_path, b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    with pytest.raises(ConfigError, match="^opts.key_file: .*not a PEM public key"):
        JWTFactory().parse_config(options(path, ["ES256"]), "opts")


def test_jwt_shared_secret_and_public_keys_do_not_mix(tmp_path: Path) -> None:
    path = written(tmp_path, pem(RSA))
    with pytest.raises(ConfigError, match="^opts.algorithms: a shared secret .HS.. and public keys"):
        JWTFactory().parse_config(options(path, ["RS256", "HS256"]), "opts")


@pytest.mark.parametrize(
    ("secret", "algorithms", "message"),
    [
        (b"", ["HS256"], "a shared secret of 0 bytes; HS256 needs at least 32"),
        (b"secret\n", ["HS256"], "a shared secret of 6 bytes; HS256 needs at least 32"),
        (b"x" * 40, ["HS256", "HS384"], "a shared secret of 40 bytes; HS384 needs at least 48"),
    ],
)
def test_jwt_shared_secret_too_short(
    tmp_path: Path, secret: bytes, algorithms: list[str], message: str
) -> None:
    """A short shared secret can be guessed; an empty one signs tokens anyone can make."""
    path = written(tmp_path, secret)
    with pytest.raises(ConfigError, match=f"^opts.key_file: {path}: {message}"):
        JWTFactory().parse_config(options(path, algorithms), "opts")


@pytest.mark.parametrize(
    "url",
    ["http://idp.example/introspect", "ftp://idp.example/x", "http:///x", "https://"],
)
def test_introspection_url_in_the_clear_over_a_network(url: str) -> None:
    """The credentials checked go to the URL: https, or http to a loopback address."""
    with pytest.raises(ConfigError, match="^opts.url: expected an https URL"):
        IntrospectionFactory().parse_config({"url": url, "cookie": "s"}, "opts")


@pytest.mark.parametrize(
    "url", ["https://idp.example/introspect", "http://127.0.0.1:8080/i", "http://[::1]/i"]
)
def test_introspection_url_accepted(url: str) -> None:
    assert IntrospectionFactory().parse_config({"url": url, "cookie": "s"}, "opts").url == url


@pytest.mark.parametrize("url", ["https://user:secret@idp.example/introspect", "http://user@127.0.0.1/i"])
def test_no_credentials_in_a_url(url: str) -> None:
    """URLs get logged: credentials go in authorization_file."""
    with pytest.raises(ConfigError, match=r"^opts.url: no credentials in the URL \(URLs get logged\)$"):
        IntrospectionFactory().parse_config({"url": url, "cookie": "s"}, "opts")
