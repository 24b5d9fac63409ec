"""The pre-built fan-out frames are exactly what the websockets library would send."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode

from chat_gateway.protocol.wsframe import text_frame


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_text_frame_matches_the_library_serialisation(size: int) -> None:
    """Every length encoding (7-bit, 16-bit, 64-bit) gives the library's bytes."""
    payload = b"x" * size
    expected = Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=[])
    assert text_frame(payload) == expected
