"""Resume tokens as the session store keeps them: the gateway hashes a client's token before
it sends it anywhere, the session service hashes a presented one to compare. One
definition, so that the two always agree."""

from __future__ import annotations

import hashlib

__all__ = ["token_hash"]


def token_hash(token: str) -> str:
    """A resume token's sha256, hex: what the session store keeps instead of the token."""
    return hashlib.sha256(token.encode()).hexdigest()
