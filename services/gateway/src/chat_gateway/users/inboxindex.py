"""The inbox index of one gateway (pure, no I/O): for each user who follows their inbox
here, their rooms with their watermark and the room's head, and for each room, who
follows it.

A room's new message moves its head for every follower who is a member, and the sender's
watermark with it (their own message is never unread for them); a ``read_state`` moves a
watermark; both only ever move forward, so events that arrive twice or late change nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["InboxIndex", "RoomState"]


@dataclass(slots=True)
class RoomState:
    """One user's view of one room: what they have read and the room's head."""

    read_seq: int
    last_seq: int

    @property
    def unread(self) -> int:
        return max(0, self.last_seq - self.read_seq)


class InboxIndex:
    """See the module docstring."""

    def __init__(self) -> None:
        self._users: dict[str, dict[str, RoomState]] = {}
        self._rooms: dict[str, set[str]] = {}

    def __contains__(self, user_id: object) -> bool:
        return user_id in self._users

    def rooms_of(self, user_id: str) -> dict[str, RoomState]:
        return self._users.get(user_id, {})

    def follows(self, room_id: str) -> bool:
        """Whether some user followed here is a member of ``room_id``."""
        return room_id in self._rooms

    def add_user(self, user_id: str, rooms: Iterable[tuple[str, int, int]]) -> list[str]:
        """Follow ``user_id`` with ``(room, read_seq, last_seq)`` (merged into what is known:
        the larger of each wins); returns the rooms nobody here followed before."""
        known = self._users.setdefault(user_id, {})
        new: list[str] = []
        for room_id, read_seq, last_seq in rooms:
            if self._joined(user_id, known, room_id, read_seq, last_seq):
                new.append(room_id)
        return new

    def remove_user(self, user_id: str) -> list[str]:
        """Stop following ``user_id``; returns the rooms nobody here follows any more."""
        gone: list[str] = []
        for room_id in self._users.pop(user_id, {}):
            if self._drop(user_id, room_id):
                gone.append(room_id)
        return gone

    def joined(self, user_id: str, room_id: str, read_seq: int, last_seq: int) -> bool:
        """``user_id`` became a member of ``room_id``; whether the room is new here."""
        known = self._users.get(user_id)
        if known is None:
            return False
        return self._joined(user_id, known, room_id, read_seq, last_seq)

    def left(self, user_id: str, room_id: str) -> bool:
        """``user_id`` left ``room_id``; whether nobody here follows the room any more."""
        known = self._users.get(user_id)
        if known is None or known.pop(room_id, None) is None:
            return False
        return self._drop(user_id, room_id)

    def read(self, user_id: str, room_id: str, read_seq: int) -> None:
        state = self._users.get(user_id, {}).get(room_id)
        if state is not None and read_seq > state.read_seq:
            state.read_seq = read_seq
            state.last_seq = max(state.last_seq, read_seq)

    def message(self, room_id: str, seq: int, sender: str | None) -> list[tuple[str, RoomState]]:
        """A message at ``seq`` in ``room_id``: the followers whose view it moved."""
        moved: list[tuple[str, RoomState]] = []
        for user_id in self._rooms.get(room_id, ()):
            state = self._users[user_id][room_id]
            if seq <= state.last_seq:
                continue
            state.last_seq = seq
            if sender == user_id:
                state.read_seq = max(state.read_seq, seq)
            moved.append((user_id, state))
        return moved

    def _joined(
        self, user_id: str, known: dict[str, RoomState], room_id: str, read_seq: int, last_seq: int
    ) -> bool:
        state = known.get(room_id)
        if state is not None:
            state.read_seq = max(state.read_seq, read_seq)
            state.last_seq = max(state.last_seq, last_seq)
            return False
        known[room_id] = RoomState(read_seq=read_seq, last_seq=max(last_seq, read_seq))
        followers = self._rooms.setdefault(room_id, set())
        followers.add(user_id)
        return len(followers) == 1

    def _drop(self, user_id: str, room_id: str) -> bool:
        followers = self._rooms.get(room_id)
        if followers is None:
            return False
        followers.discard(user_id)
        if followers:
            return False
        del self._rooms[room_id]
        return True
