"""WebSocket frames as the server sends them, built once and written to many connections.

A server's frames are not masked (RFC 6455, section 5.1), so the bytes of one text frame
are the same for every recipient: fan-out serialises a frame once per broadcast instead of
once per member. Only final, uncompressed text frames are built here (the gateway runs
without extensions).
"""

from __future__ import annotations

import struct

__all__ = ["text_frame"]

_FIN_TEXT = 0x81
_LEN16 = struct.Struct("!BBH")
_LEN64 = struct.Struct("!BBQ")


def text_frame(payload: bytes) -> bytes:
    """The wire bytes of one unmasked, final text frame carrying ``payload``."""
    size = len(payload)
    if size < 126:
        return bytes((_FIN_TEXT, size)) + payload
    if size < 1 << 16:
        return _LEN16.pack(_FIN_TEXT, 126, size) + payload
    return _LEN64.pack(_FIN_TEXT, 127, size) + payload
