"""
Gateway-to-gateway identity assertions: what the outer signs, and the inner's
assertion login module accepting only fresh assertions of trusted gateways,
once, over the right client certificate.
"""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.unit.test_login_modules import cb, login
from tunnelgw.config.values import ConfigError
from tunnelgw.security import Subject
from tunnelgw.security.jaas import LoginFailed
from tunnelgw.security.modules.assertion import AssertionFactory
from tunnelgw.security.signer import AssertionSigner

KEY = ec.generate_private_key(ec.SECP256R1())
OTHER = ec.generate_private_key(ec.SECP256R1())


def certificate(cn: str) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(KEY.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(hours=1))
        .sign(KEY, hashes.SHA256())
    )


@pytest.fixture
def options(tmp_path: Path) -> dict[str, Any]:
    public = tmp_path / "outer.pem"
    public.write_bytes(
        KEY.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return {
        "audience": "inner-1",
        "trusted": [{"issuer": "outer-1", "key_file": str(public), "certificate_subject": "CN=outer-1"}],
    }


def signer(key: Any = KEY, **kw: Any) -> AssertionSigner:
    values = {"issuer": "outer-1", "audience": "inner-1", "key": key, "algorithm": "ES256", "lifetime": 30.0}
    values.update(kw)
    return AssertionSigner(**values)


EDGE = Subject.of("alice", ["staff"], method="password", expires=time.time() + 3600, gateways=["edge-0"])


def test_signed_claims() -> None:
    claims = jwt.decode(
        signer().sign(EDGE, time.time()), KEY.public_key(), algorithms=["ES256"], audience="inner-1"
    )
    assert claims["sub"] == "alice" and claims["roles"] == ["staff"]
    assert claims["gateways"] == ["edge-0", "outer-1"]
    assert claims["exp"] - claims["iat"] <= 31
    assert claims["session_expires"] == EDGE.expires
    assert claims["method"] == "password"


def test_accepted_once_with_the_users_identity(options: dict[str, Any]) -> None:
    token = signer().sign(EDGE, time.time())
    subject = login(AssertionFactory(), options, cb(assertion=token, peer_certificate=certificate("outer-1")))
    assert subject.user == "alice" and subject.roles == {"staff"}
    assert subject.attributes["gateways"] == ["edge-0", "outer-1"]
    assert subject.attributes["method"] == "assertion"
    # the inner tunnel lives by the user's own expiry, not the assertion's
    assert subject.expires == EDGE.expires


@pytest.mark.parametrize(
    ("token", "certificate_cn", "why"),
    [
        (None, "outer-1", "no gateway assertion"),
        (lambda: signer(OTHER).sign(EDGE, time.time()), "outer-1", "invalid assertion"),
        (lambda: signer(issuer="stranger").sign(EDGE, time.time()), "outer-1", "untrusted issuer"),
        (lambda: signer(audience="inner-2").sign(EDGE, time.time()), "outer-1", "invalid assertion"),
        (lambda: signer().sign(EDGE, time.time() - 120), "outer-1", "assertion expired"),
        (lambda: signer(lifetime=600).sign(EDGE, time.time()), "outer-1", "valid for longer than 60s"),
        (lambda: signer().sign(EDGE, time.time()), "mallory", "client certificate is not outer-1's"),
        (lambda: signer().sign(EDGE, time.time()), None, "client certificate is not outer-1's"),
        (lambda: "not.a.jwt", "outer-1", "invalid assertion"),
    ],
)
def test_refused(options: dict[str, Any], token: Any, certificate_cn: str | None, why: str) -> None:
    callbacks = cb(
        assertion=token() if token else None,
        peer_certificate=certificate(certificate_cn) if certificate_cn else None,
    )
    with pytest.raises(LoginFailed, match=why):
        login(AssertionFactory(), options, callbacks)


def test_replay_refused(options: dict[str, Any]) -> None:
    factory = AssertionFactory()
    parsed = factory.parse_config(options, "opts")
    token = signer().sign(EDGE, time.time())
    callbacks = cb(assertion=token, peer_certificate=certificate("outer-1"))
    from tunnelgw.security.jaas import Flag, LoginContext, ModuleEntry

    entry = ModuleEntry("assertion", factory, Flag.REQUIRED, parsed)
    results: list[Any] = []
    for _ in range(2):
        LoginContext("t", [entry]).login(callbacks).addBoth(results.append)
    assert isinstance(results[0], Subject)
    assert results[1].check(LoginFailed) and "already used" in str(results[1].value)


def test_config_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="opts.algorithms: 'HS256': use a public-key algorithm"):
        AssertionFactory().parse_config({**options, "algorithms": ["HS256"]}, "opts")
    with pytest.raises(ConfigError, match=r"opts.trusted: at least one"):
        AssertionFactory().parse_config({"audience": "x"}, "opts")
    with pytest.raises(ConfigError, match=r"opts.trusted\[0\].key_file: /nonexistent"):
        AssertionFactory().parse_config(
            {"audience": "x", "trusted": [{"issuer": "o", "key_file": "/nonexistent"}]}, "opts"
        )


def test_an_outer_moving_to_a_new_key(options: dict[str, Any], tmp_path: Path) -> None:
    """Both keys of the issuer's key_file are accepted; another is not."""
    both = tmp_path / "both.pem"
    public = [
        k.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        for k in (KEY, OTHER)
    ]
    both.write_bytes(b"".join(public))
    options["trusted"][0]["key_file"] = str(both)
    for key in (KEY, OTHER):
        assertion = signer(key).sign(EDGE, time.time())
        subject = login(
            AssertionFactory(), options, cb(assertion=assertion, peer_certificate=certificate("outer-1"))
        )
        assert subject.user == "alice"
    stranger = signer(ec.generate_private_key(ec.SECP256R1())).sign(EDGE, time.time())
    with pytest.raises(LoginFailed, match="invalid assertion: Signature verification failed"):
        login(AssertionFactory(), options, cb(assertion=stranger, peer_certificate=certificate("outer-1")))


def test_a_key_file_that_is_not_a_public_key(options: dict[str, Any], tmp_path: Path) -> None:
    private = tmp_path / "private.pem"
    private.write_bytes(
        KEY.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    options["trusted"][0]["key_file"] = str(private)
    with pytest.raises(
        ConfigError, match=r"^opts.trusted\[0\].key_file: .*: a private key; give the public key only"
    ):
        AssertionFactory().parse_config(options, "opts")
