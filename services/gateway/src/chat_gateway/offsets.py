"""Event offsets (pure): what a recovering Socket.IO client reports it has received.

Every ``new_message`` sent to a Socket.IO client with recovery on carries an *offset* as
its last argument: the client's delivered position in **each** of its rooms after this
message, ``room:seq`` pairs joined by ``,`` (room ids cannot contain either character). The
official client keeps the last offset it saw and sends it back on reconnect, so the server
knows exactly what was received, room by room, even if the gateway that sent it died. A
room absent from the offset was joined after the last event the client got; its
position is the one recorded at join.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from chat_common.schemas import ROOM_ID_CHARS

__all__ = [
    "MAX_OFFSET_LENGTH",
    "decode_offset",
    "encode_offset",
    "offset_arg",
]

MAX_OFFSET_LENGTH = 16_384
_PAIR = re.compile(rf"^({ROOM_ID_CHARS}):(\d{{1,18}})\Z")


def encode_offset(positions: Mapping[str, int]) -> str:
    """``room:seq,room:seq`` in room order."""
    return ",".join(f"{room}:{seq}" for room, seq in sorted(positions.items()))


def offset_arg(positions: Mapping[str, int]) -> bytes:
    """The offset as the extra JSON argument of a Socket.IO ``new_message`` event."""
    return b'"' + encode_offset(positions).encode() + b'"'


def decode_offset(offset: object) -> dict[str, int]:
    """Positions from an offset; anything malformed yields ``{}`` (fall back to the store)."""
    if not isinstance(offset, str) or not offset or len(offset) > MAX_OFFSET_LENGTH:
        return {}
    positions: dict[str, int] = {}
    for part in offset.split(","):
        match = _PAIR.match(part)
        if match is None:
            return {}
        positions[match.group(1)] = int(match.group(2))
    return positions
