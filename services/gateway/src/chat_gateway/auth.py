"""Who is connecting: JWT verification and the room policy (no I/O but reading a key file).

* Algorithms come from a fixed allowlist in settings, never from the token header, and
  HMAC (``HS*``) never mixes with public-key algorithms (``RS*``, ``ES*``, ``PS*``): the
  settings are refused at startup otherwise. HS keys must have at least 32 bytes.
* ``exp``, ``iat`` and ``sub`` are required; ``aud`` and ``iss`` are checked when configured;
  clock skew is tolerated up to the configured leeway.
* The identity's email is the ``email`` claim, or ``sub`` when there is none.
* Rooms: with the ``claim`` policy the token's ``rooms`` claim lists what it may join:
  exact names, or prefixes ending in ``*`` (``"team-*"``); with the ``open`` policy any
  valid room id may be joined.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import jwt

from chat_common.schemas import EMAIL_PATTERN

__all__ = ["AuthError", "Identity", "JwtVerifier", "build_verifier", "room_allowed"]

_HMAC = re.compile(r"^HS(256|384|512)$")
_ASYMMETRIC = re.compile(r"^(RS|PS|ES)(256|384|512)$|^EdDSA$")
_EMAIL = re.compile(EMAIL_PATTERN)
MAX_TOKEN_LENGTH = 8192


class AuthError(Exception):
    """The token is missing or not acceptable; ``reason`` is safe to log (no token)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Identity:
    subject: str
    email: str
    rooms: tuple[str, ...] | None
    """Rooms the token allows (exact or ``prefix*``); ``None`` means any room."""
    expires_at: float


class JwtVerifier:
    """Verifies tokens against one key and a fixed algorithm allowlist."""

    def __init__(
        self,
        *,
        algorithms: list[str],
        key: str | bytes,
        audience: str | None,
        issuer: str | None,
        leeway_s: float,
        rooms_from_claim: bool,
    ) -> None:
        self._algorithms = algorithms
        self._key = key
        self._audience = audience
        self._issuer = issuer
        self._leeway = leeway_s
        self._rooms_from_claim = rooms_from_claim

    def verify(self, token: object) -> Identity:
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
            raise AuthError("missing or malformed token")
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={
                    "require": ["exp", "iat", "sub"],
                    "verify_aud": self._audience is not None,
                },
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token ({type(exc).__name__})") from None
        email = claims.get("email", claims["sub"])
        if not isinstance(email, str) or not _EMAIL.match(email):
            raise AuthError("token names no usable email")
        rooms: tuple[str, ...] | None = None
        if self._rooms_from_claim:
            claim = claims.get("rooms", [])
            if not isinstance(claim, list) or not all(isinstance(r, str) for r in claim):
                raise AuthError("rooms claim must be a list of strings")
            rooms = tuple(claim)
        return Identity(
            subject=str(claims["sub"]), email=email, rooms=rooms, expires_at=float(claims["exp"])
        )


def room_allowed(identity: Identity | None, room_id: str) -> bool:
    """Whether ``identity`` may join ``room_id`` (no identity: development mode, yes)."""
    if identity is None or identity.rooms is None:
        return True
    for allowed in identity.rooms:
        if allowed.endswith("*") and room_id.startswith(allowed[:-1]):
            return True
        if allowed == room_id:
            return True
    return False


def build_verifier(
    *,
    algorithms: list[str],
    secret: str | None,
    public_key_file: Path | None,
    audience: str | None,
    issuer: str | None,
    leeway_s: float,
    room_policy: str,
) -> JwtVerifier:
    """A verifier from settings; raises ``ValueError`` for unsafe or incomplete settings."""
    if not algorithms:
        raise ValueError("GATEWAY_JWT_ALGORITHMS is empty")
    hmac = [a for a in algorithms if _HMAC.match(a)]
    asymmetric = [a for a in algorithms if _ASYMMETRIC.match(a)]
    if len(hmac) + len(asymmetric) != len(algorithms):
        raise ValueError("GATEWAY_JWT_ALGORITHMS holds an unknown or forbidden algorithm")
    if hmac and asymmetric:
        raise ValueError("HMAC and public-key algorithms must not be mixed")
    key: str | bytes
    if hmac:
        if secret is None or len(secret.encode()) < 32:
            raise ValueError("HS* algorithms need GATEWAY_JWT_SECRET of at least 32 bytes")
        key = secret
    else:
        if public_key_file is None:
            raise ValueError("public-key algorithms need GATEWAY_JWT_PUBLIC_KEY_FILE")
        key = public_key_file.read_bytes()
    return JwtVerifier(
        algorithms=algorithms,
        key=key,
        audience=audience,
        issuer=issuer,
        leeway_s=leeway_s,
        rooms_from_claim=room_policy == "claim",
    )
