"""The rooms one connection is in, and its two positions in each (pure).

* The **join position** of a room is the seq its join (or resume) answer covered: the member
  has every message up to it; it is what the session store records for the room.
* The **delivered position** is the last seq written to the connection; a Socket.IO client
  with recovery on gets them all as the *offset* of each ``new_message``
  (:mod:`chat_gateway.offsets`), and reports them back when it resumes.
"""

from __future__ import annotations

from chat_gateway.offsets import offset_arg

__all__ = ["Membership"]


class Membership:
    """Rooms and positions of one connection."""

    __slots__ = ("delivered_positions", "join_positions", "offsets", "rooms")

    def __init__(self, *, offsets: bool) -> None:
        self.rooms: set[str] = set()
        self.join_positions: dict[str, int] = {}
        """room -> the seq its join (or resume) answer covered: the position on record."""
        self.delivered_positions: dict[str, int] = {}
        """room -> the last seq written to this connection (what its offsets report)."""
        self.offsets = offsets
        """Whether ``new_message`` events carry the offset (Socket.IO connection recovery)."""

    def __contains__(self, room_id: object) -> bool:
        return room_id in self.rooms

    def __len__(self) -> int:
        return len(self.rooms)

    def joined(self, room_id: str, *, join_position: int) -> None:
        """A join (or a resumed room) is on record, with every message up to
        ``join_position``."""
        self.rooms.add(room_id)
        self.join_positions[room_id] = join_position

    def left(self, room_id: str) -> None:
        self.rooms.discard(room_id)

    def leave_all(self) -> list[str]:
        """Forget every room; the rooms it was in."""
        rooms = list(self.rooms)
        self.rooms.clear()
        self.join_positions.clear()
        return rooms

    def start_position(self, room_id: str, seq: int, *, reset: bool = False) -> None:
        """The last seq of ``room_id`` the connection has, as it joins (or, with ``reset``,
        resumes)."""
        if reset:
            self.delivered_positions[room_id] = seq
        else:
            self.delivered_positions.setdefault(room_id, seq)

    def advance(self, room_id: str, seq: int) -> None:
        """``seq`` of ``room_id`` is being written to the connection."""
        self.delivered_positions[room_id] = seq

    def drop_position(self, room_id: str) -> None:
        self.delivered_positions.pop(room_id, None)

    @property
    def single_room(self) -> bool:
        """Whether the offset names one room only (then it is the same for every member of
        that room who is in it alone, and one frame serves them all)."""
        return len(self.delivered_positions) == 1

    def offset(self) -> bytes:
        """The offset as the extra JSON argument of a ``new_message`` event."""
        return offset_arg(self.delivered_positions)
