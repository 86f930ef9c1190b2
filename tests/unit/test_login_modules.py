"""
The shipped login modules, each accepting good and refusing bad
credentials, in memory (argon2 verification runs inline here).
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from argon2 import PasswordHasher
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from twisted.internet import defer

from tunnelgw.config.values import ConfigError
from tunnelgw.security.callbacks import Callbacks
from tunnelgw.security.jaas import Flag, LoginContext, LoginFailed, ModuleEntry
from tunnelgw.security.modules.address import AddressFilterFactory
from tunnelgw.security.modules.anonymous import AnonymousFactory
from tunnelgw.security.modules.jwt import JWTFactory
from tunnelgw.security.modules.password_file import PasswordFileFactory
from tunnelgw.testing import callbacks, log_in

FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def inline(f: Any, *args: Any) -> defer.Deferred[Any]:
    return defer.succeed(f(*args))


# what tunnelgw.testing offers module authors, under the names these tests use
login = log_in
cb = callbacks


# -- password_file ---------------------------------------------------------------


@pytest.fixture
def users(tmp_path: Path) -> Path:
    path = tmp_path / "users"
    path.write_text(f"# staff\nalice:{FAST.hash('alicepw')}:vnc,ops\n\nbob:{FAST.hash('bobpw')}\n")
    return path


def test_password_good(users: Path) -> None:
    subject = login(PasswordFileFactory(inline), {"path": str(users)}, cb(basic=("alice", "alicepw")))
    assert subject.user == "alice" and subject.roles == {"vnc", "ops"}
    assert subject.attributes["method"] == "password"


@pytest.mark.parametrize(
    "basic",
    [("alice", "wrong"), ("mallory", "alicepw"), ("alice", ""), None],
    ids=["wrong", "unknown", "empty", "none"],
)
def test_password_bad(users: Path, basic: Any) -> None:
    with pytest.raises(LoginFailed):
        login(PasswordFileFactory(inline), {"path": str(users)}, cb(basic=basic))


def test_password_file_reloaded_when_changed(users: Path) -> None:
    factory = PasswordFileFactory(inline)
    options = {"path": str(users)}
    login(factory, options, cb(basic=("bob", "bobpw")))
    entry = ModuleEntry("password_file", factory, Flag.REQUIRED, factory.parse_config(options, "o"))
    results: list[Any] = []
    LoginContext("t", [entry]).login(cb(basic=("bob", "bobpw"))).addCallback(results.append)
    subject = results[0]
    (module,) = subject.session.modules
    assert module.revalidate(subject)
    users.write_text(f"alice:{FAST.hash('alicepw')}\n")  # bob removed
    assert not module.revalidate(subject)
    again: list[Any] = []
    LoginContext("t", [entry]).login(cb(basic=("bob", "bobpw"))).addBoth(again.append)
    assert isinstance(again[0].value, LoginFailed)  # same module options: the file was read again


def test_password_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="opts.path: required"):
        PasswordFileFactory().parse_config({}, "opts")
    with pytest.raises(ConfigError, match="No such file"):
        PasswordFileFactory().parse_config({"path": str(tmp_path / "none")}, "opts")
    bad = tmp_path / "bad"
    bad.write_text("alice:plaintext\n")
    with pytest.raises(ConfigError, match="bad:1: expected name:argon2-hash"):
        PasswordFileFactory().parse_config({"path": str(bad)}, "opts")
    with pytest.raises(ConfigError, match="opts.colour: unknown key"):
        PasswordFileFactory().parse_config({"path": str(bad), "colour": 1}, "opts")


# -- jwt ---------------------------------------------------------------------------


@pytest.fixture
def es256(tmp_path: Path) -> tuple[Any, dict[str, Any]]:
    key = ec.generate_private_key(ec.SECP256R1())
    public = tmp_path / "public.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    options = {
        "algorithms": ["ES256"],
        "key_file": str(public),
        "audience": "tunnelgw",
        "issuer": "https://idp",
    }
    return key, options


def token(key: Any, algorithm: str = "ES256", **claims: Any) -> str:
    now = int(time.time())
    base = {"sub": "alice", "aud": "tunnelgw", "iss": "https://idp", "exp": now + 60, "roles": ["vnc"]}
    base.update(claims)
    return jwt.encode({k: v for k, v in base.items() if v is not None}, key, algorithm=algorithm)


def test_jwt_good(es256: Any) -> None:
    key, options = es256
    subject = login(JWTFactory(), options, cb(bearer=token(key)))
    assert subject.user == "alice" and subject.roles == {"vnc"}
    assert subject.attributes["expires"] > time.time()


def test_jwt_roles_as_string(es256: Any) -> None:
    key, options = es256
    subject = login(JWTFactory(), options, cb(bearer=token(key, roles="a b")))
    assert subject.roles == {"a", "b"}


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"exp": int(time.time()) - 3600}, "token expired"),
        ({"exp": None}, "exp"),
        ({"nbf": int(time.time()) + 3600}, "not yet valid"),
        ({"aud": "someone-else"}, "(?i)audience"),
        ({"iss": "https://evil"}, "issuer"),
        ({"sub": None}, "sub"),
        # RFC 7519 NumericDate: a JSON number, which pyjwt alone does not insist on
        ({"exp": str(int(time.time()) + 86400)}, "exp claim is not a NumericDate"),
        ({"nbf": str(int(time.time()) - 60)}, "nbf claim is not a NumericDate"),
        ({"iat": True}, "iat claim is not a NumericDate"),
    ],
)
def test_jwt_bad_claims(es256: Any, claims: dict[str, Any], message: str) -> None:
    key, options = es256
    with pytest.raises(LoginFailed, match=message):
        login(JWTFactory(), options, cb(bearer=token(key, **claims)))


def test_jwt_wrong_signature_and_algorithm(es256: Any) -> None:
    _, options = es256
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(LoginFailed, match="invalid token"):
        login(JWTFactory(), options, cb(bearer=token(other)))
    with pytest.raises(LoginFailed, match="invalid token"):
        login(
            JWTFactory(),
            options,
            cb(bearer=token("a secret that is long enough for hs256 keys", algorithm="HS256")),
        )
    unsigned = jwt.encode(
        {"sub": "alice", "aud": "tunnelgw", "exp": int(time.time()) + 60}, None, algorithm="none"
    )
    with pytest.raises(LoginFailed, match="invalid token"):
        login(JWTFactory(), options, cb(bearer=unsigned))
    with pytest.raises(LoginFailed, match="no token"):
        login(JWTFactory(), options, cb())


def test_jwt_from_cookie_and_query(es256: Any) -> None:
    key, options = es256
    cookie = dict(options, source="cookie", cookie="session")
    assert login(JWTFactory(), cookie, cb(cookies={"session": token(key)})).user == "alice"
    with pytest.raises(LoginFailed):
        login(JWTFactory(), cookie, cb(bearer=token(key)))  # a bearer header is not the cookie
    query = dict(options, source="query", query_param="access_token")
    assert login(JWTFactory(), query, cb(query={"access_token": [token(key)]})).user == "alice"


def p256_jwk(public_key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    """
    A P-256 public key as a JWK, each coordinate its full 32 bytes (RFC 7518
    6.2.1.2).  PyJWT 2.9's C{to_jwk} (the declared floor) drops leading
    zero bytes, which its own C{from_jwk} then refuses: one key in 128.
    """
    numbers = public_key.public_numbers()

    def coordinate(value: int) -> str:
        return base64.urlsafe_b64encode(value.to_bytes(32, "big")).rstrip(b"=").decode()

    return {"kty": "EC", "crv": "P-256", "x": coordinate(numbers.x), "y": coordinate(numbers.y)}


def test_jwt_hs256_and_jwks(tmp_path: Path, es256: Any) -> None:
    secret = tmp_path / "secret"
    secret.write_text("a long shared secret of more than thirty-two bytes\n")
    options = {"algorithms": ["HS256"], "key_file": str(secret), "audience": "tunnelgw"}
    good = token("a long shared secret of more than thirty-two bytes", algorithm="HS256")
    assert login(JWTFactory(), options, cb(bearer=good)).user == "alice"

    key, _ = es256
    jwk = {**p256_jwk(key.public_key()), "kid": "k1"}
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk]}))
    options = {"algorithms": ["ES256"], "jwks_file": str(jwks), "audience": "tunnelgw"}
    signed = jwt.encode(
        {"sub": "alice", "aud": "tunnelgw", "exp": int(time.time()) + 60},
        key,
        algorithm="ES256",
        headers={"kid": "k1"},
    )
    assert login(JWTFactory(), options, cb(bearer=signed)).user == "alice"
    wrong_kid = jwt.encode(
        {"sub": "alice", "aud": "tunnelgw", "exp": int(time.time()) + 60},
        key,
        algorithm="ES256",
        headers={"kid": "k2"},
    )
    with pytest.raises(LoginFailed, match="kid"):
        login(JWTFactory(), options, cb(bearer=wrong_kid))


def test_jwt_config_errors(es256: Any) -> None:
    _, options = es256
    with pytest.raises(ConfigError, match="opts.algorithms: unsupported algorithm 'none'"):
        JWTFactory().parse_config(dict(options, algorithms=["none"]), "opts")
    with pytest.raises(ConfigError, match="exactly one of key_file, jwks_file and jwks_uri"):
        JWTFactory().parse_config({k: v for k, v in options.items() if k != "key_file"}, "opts")
    with pytest.raises(ConfigError, match="opts.audience: required"):
        JWTFactory().parse_config({k: v for k, v in options.items() if k != "audience"}, "opts")
    with pytest.raises(ConfigError, match="opts.cookie: required"):
        JWTFactory().parse_config(dict(options, source="cookie"), "opts")


# -- address and anonymous ---------------------------------------------------------------


def test_address_filter() -> None:
    options = {"allow": ["10.0.0.0/8", "2001:db8::/32"], "deny": ["10.6.6.0/24"]}
    assert login(AddressFilterFactory(), options, cb(address="10.1.2.3")).user is None
    assert (
        login(AddressFilterFactory(), options, cb(address="2001:db8::1")).attributes["address"]
        == "2001:db8::1"
    )
    for address in ("10.6.6.6", "192.0.2.1", "unix"):
        with pytest.raises(LoginFailed):
            login(AddressFilterFactory(), options, cb(address=address))
    with pytest.raises(ConfigError, match="opts: give allow, deny or both"):
        AddressFilterFactory().parse_config({}, "opts")
    with pytest.raises(ConfigError, match=r"opts.allow\[0\]"):
        AddressFilterFactory().parse_config({"allow": ["10.0.0.1/8"]}, "opts")


def test_anonymous() -> None:
    subject = login(AnonymousFactory(), {"roles": ["public"]}, cb())
    assert subject.user is None and subject.roles == {"public"} and subject.principal == "anonymous"
    assert login(AnonymousFactory(), {"user": "guest"}, cb()).user == "guest"


def test_callbacks_from_request() -> None:
    import base64

    class Request:
        peer_host = "192.0.2.5"
        headers = {
            "authorization": ["Basic " + base64.b64encode(b"alice:pw:with:colons").decode()],
            "cookie": ["session=abc; theme=dark", "bad cookie ;;; ="],
            "origin": ["https://app.example.com"],
        }
        query = {"t": ["x"]}

    c = Callbacks.from_request(Request())
    assert c.basic == ("alice", "pw:with:colons")
    assert c.cookies["session"] == "abc" and c.origin == "https://app.example.com" and c.query == {"t": ["x"]}
    Request.headers = {"authorization": ["Bearer tok"]}
    assert Callbacks.from_request(Request()).bearer == "tok"
    Request.headers = {"authorization": ["Basic !!!notbase64"]}
    assert Callbacks.from_request(Request()).basic is None


def test_callbacks_carry_every_request_header() -> None:
    """
    A module can read a header of its own (an API key, a certificate
    forwarded by a trusted proxy); a repeated one reads as absent.
    """
    from types import SimpleNamespace

    request = SimpleNamespace(
        peer_host="192.0.2.1",
        headers={"x-api-key": ["k1"], "x-twice": ["a", "b"], "origin": ["https://o"]},
        query={},
        peer_certificate=None,
    )
    callbacks = Callbacks.from_request(request)
    assert callbacks.header("X-API-Key") == "k1"
    assert callbacks.header("x-twice") is None and callbacks.headers["x-twice"] == ["a", "b"]
    assert callbacks.header("x-absent") is None
