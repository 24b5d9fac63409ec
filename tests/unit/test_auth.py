"""JWT verification and the room policy (no network)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from chat_gateway.auth import AuthError, Identity, build_verifier, room_allowed
from chat_gateway.ratelimit import TokenBucket

SECRET = "s" * 40


def _hs_token(**claims: object) -> str:
    now = int(time.time())
    base: dict[str, object] = {"sub": "ann@example.com", "iat": now, "exp": now + 60}
    base.update(claims)
    return jwt.encode({k: v for k, v in base.items() if v is not None}, SECRET, algorithm="HS256")


def _hs(**kwargs: object) -> object:
    settings = {"algorithms": ["HS256"], "secret": SECRET, "public_key_file": None, "audience": None,
                "issuer": None, "leeway_s": 0, "room_policy": "open"} | kwargs  # fmt: skip
    return build_verifier(**settings)  # type: ignore[arg-type]


def test_valid_token_gives_the_identity() -> None:
    """A good HS256 token yields its email (sub when there is no email claim)."""
    identity = _hs().verify(_hs_token())  # type: ignore[attr-defined]
    assert identity.email == "ann@example.com" and identity.rooms is None
    assert _hs().verify(_hs_token(sub="u1", email="bob@example.com")).email == "bob@example.com"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "token",
    [
        _hs_token(exp=int(time.time()) - 120),
        _hs_token(exp=None),
        _hs_token(iat=None),
        _hs_token(sub=None),
        jwt.encode({"sub": "a@b.io", "iat": 1, "exp": 2**40}, "x" * 40, algorithm="HS256"),
        jwt.encode({"sub": "a@b.io", "iat": 1, "exp": 2**40}, None, algorithm="none"),
        "not.a.token",
        "",
        None,
        42,
        "x" * 9000,
    ],
    ids=[
        "expired",
        "no-exp",
        "no-iat",
        "no-sub",
        "bad-signature",
        "alg-none",
        "garbage",
        "empty",
        "none",
        "number",
        "huge",
    ],
)
def test_bad_tokens_are_refused(token: object) -> None:
    """Expired, incomplete, unsigned, wrongly signed or malformed tokens raise AuthError."""
    with pytest.raises(AuthError):
        _hs().verify(token)  # type: ignore[attr-defined]


def test_audience_and_issuer_are_checked_when_configured() -> None:
    """With aud/iss configured, a token for another audience or issuer is refused."""
    verifier = _hs(audience="chat", issuer="https://id.example")
    good = _hs_token(aud="chat", iss="https://id.example")
    assert verifier.verify(good).email == "ann@example.com"  # type: ignore[attr-defined]
    for bad in (
        _hs_token(aud="other", iss="https://id.example"),
        _hs_token(aud="chat", iss="https://evil"),
        _hs_token(),
    ):
        with pytest.raises(AuthError):
            verifier.verify(bad)  # type: ignore[attr-defined]


def test_hs256_signed_with_the_rsa_public_key_is_refused(tmp_path: Path) -> None:
    """The classic confusion: an RS256 gateway never accepts an HS256 token keyed with its
    public key (the algorithm comes from settings, not from the token)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key_file = tmp_path / "pub.pem"
    key_file.write_bytes(public_pem)
    verifier = _hs(algorithms=["RS256"], secret=None, public_key_file=key_file)
    now = int(time.time())
    claims = {"sub": "a@b.io", "iat": now, "exp": now + 60}
    assert verifier.verify(jwt.encode(claims, private, algorithm="RS256")).email == "a@b.io"  # type: ignore[attr-defined]

    def b64(raw: bytes) -> str:
        return jwt.utils.base64url_encode(raw).decode()

    header_payload = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(json.dumps(claims).encode())
    signature = hmac.new(public_pem, header_payload.encode(), hashlib.sha256).digest()
    confused = header_payload + "." + b64(signature)
    with pytest.raises(AuthError):
        verifier.verify(confused)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "settings",
    [
        {"algorithms": ["HS256", "RS256"]},
        {"algorithms": ["none"]},
        {"algorithms": []},
        {"secret": "short"},
        {"algorithms": ["RS256"], "secret": None, "public_key_file": None},
    ],
    ids=["mixed", "none", "empty", "short-secret", "no-public-key"],
)
def test_unsafe_settings_are_refused_at_startup(settings: dict[str, object]) -> None:
    """Mixed families, 'none', short HS keys and missing keys stop the gateway from starting."""
    with pytest.raises(ValueError):
        _hs(**settings)


def test_room_claim_policy() -> None:
    """Exact names and prefix* patterns from the rooms claim decide which rooms may be joined."""
    identity = Identity(subject="s", email="a@b.io", rooms=("lobby", "team-*"), expires_at=0)
    assert room_allowed(identity, "lobby") and room_allowed(identity, "team-red")
    assert not room_allowed(identity, "lobby2") and not room_allowed(identity, "tea")
    assert room_allowed(None, "anything")
    assert room_allowed(Identity("s", "a@b.io", None, 0), "anything")


def test_token_bucket_holds_the_rate() -> None:
    """A bucket grants its burst, then one token per 1/rate seconds, and says how long to wait."""
    now = [0.0]
    bucket = TokenBucket(rate=10, burst=5, clock=lambda: now[0])
    assert [bucket.take() for _ in range(5)] == [0.0] * 5
    assert bucket.take() == pytest.approx(0.1)
    now[0] += 0.1
    assert bucket.take() == 0.0
    now[0] += 10
    granted = sum(1 for _ in range(20) if bucket.take() == 0.0)
    assert granted == 5
