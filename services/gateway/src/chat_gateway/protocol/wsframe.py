"""WebSocket frames as the server sends them, built once and written to many connections.

A server's frames are not masked (RFC 6455, section 5.1), so the bytes of one text frame
are the same for every recipient: fan-out serialises a frame once per broadcast instead of
once per member. Only final, uncompressed text frames are built here (the gateway runs
without extensions). :func:`text_payloads` reads such frames back: the long-polling
transport carries the same packets without the WebSocket framing.
"""

from __future__ import annotations

import struct

__all__ = ["text_frame", "text_payloads"]

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


def text_payloads(data: bytes) -> list[bytes]:
    """The payloads of the frames :func:`text_frame` built, concatenated in ``data``.

    Raises ``ValueError`` on anything else (a truncated frame, another opcode, a mask).
    """
    payloads: list[bytes] = []
    view, pos, end = memoryview(data), 0, len(data)
    while pos < end:
        if end - pos < 2 or data[pos] != _FIN_TEXT or data[pos + 1] & 0x80:
            raise ValueError("not a sequence of unmasked final text frames")
        size = data[pos + 1]
        header = _LEN16 if size == 126 else _LEN64 if size == 127 else None
        if header is None:
            pos += 2
        elif end - pos < header.size:
            raise ValueError("truncated frame")
        else:
            size = header.unpack_from(data, pos)[2]
            pos += header.size
        if pos + size > end:
            raise ValueError("truncated frame")
        payloads.append(bytes(view[pos : pos + size]))
        pos += size
    return payloads
