"""The pre-built fan-out frames are exactly what the websockets library would send."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode

from chat_gateway.protocol.wsframe import text_frame, text_payloads


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_text_frame_matches_the_library_serialisation(size: int) -> None:
    """Every length encoding (7-bit, 16-bit, 64-bit) gives the library's bytes."""
    payload = b"x" * size
    expected = Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=[])
    assert text_frame(payload) == expected


def test_text_payloads_reads_back_what_text_frame_built() -> None:
    """Every length class (7-bit, 16-bit, 64-bit) comes back intact, in order."""
    payloads = [b"", b"2", b"x" * 125, b"y" * 126, b"z" * 65535, b"w" * 65536]
    assert text_payloads(b"".join(text_frame(p) for p in payloads)) == payloads
    assert text_payloads(b"") == []


@pytest.mark.parametrize(
    "data",
    [b"\x81", b"\x81\x05abc", b"\x82\x01x", b"\x01\x01x", b"\x81\x81\0\0\0\0x", b"\x81\x7e\x00",
     b"\x81\x7f" + b"\0" * 7],
)  # fmt: skip
def test_text_payloads_refuses_anything_else(data: bytes) -> None:
    """Truncated frames, other opcodes, fragments and masked frames are not ours."""
    with pytest.raises(ValueError):
        text_payloads(data)
