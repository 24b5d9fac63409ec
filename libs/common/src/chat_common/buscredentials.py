"""NKey credentials for the bus: making a user key, and keeping its seed from being seen.

A NATS identity (:mod:`chat_common.buspermissions`) is an NKey user: an Ed25519 key pair.
The server's config holds only the public key (``U…``, not a secret); the service holds the
seed (``SU…``, the secret) and proves itself by signing the server's nonce, so the seed
never crosses the network. Seeds are written only to files their owner alone can read, and
never logged or shown in a ``repr``.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import nkeys

__all__ = ["UserKey", "new_user_key", "public_key", "read_seed", "write_seed"]


@dataclass(frozen=True)
class UserKey:
    """An NKey user: ``seed`` (secret, ``SU…``) and ``public`` (``U…``)."""

    seed: str = field(repr=False)
    public: str


def new_user_key() -> UserKey:
    """A fresh NKey user key pair from the operating system's random source."""
    seed = nkeys.encode_seed(secrets.token_bytes(32), nkeys.PREFIX_BYTE_USER).decode()
    return UserKey(seed=seed, public=public_key(seed))


def public_key(seed: str) -> str:
    """The public key of a user seed; ``ValueError`` (without the seed) if it is not one."""
    try:
        pair = nkeys.from_seed(bytearray(seed.strip().encode()))
        public = str(pair.public_key.decode())
        pair.wipe()
    except Exception:  # nkeys raises its own errors, binascii's and IndexError alike
        raise ValueError("not an NKey seed") from None
    if not public.startswith("U"):
        raise ValueError("not an NKey user seed")
    return public


def read_seed(path: Path) -> str:
    """The seed in ``path`` (``OSError`` if unreadable, ``ValueError`` if not a user seed)."""
    seed = path.read_text().strip()
    public_key(seed)
    return seed


def write_seed(path: Path, key: UserKey) -> None:
    """Write ``key``'s seed to ``path``, readable by its owner only (mode 0600, in a
    directory created 0700). An existing file is replaced atomically, so a client reading
    it to reconnect sees the old seed or the new one, never half of one."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, key.seed.encode() + b"\n")
    finally:
        os.close(fd)
    os.replace(partial, path)
