"""The inbox index of one gateway (pure, no I/O): for each user who follows their inbox
here, their rooms with their watermark and the room's head, and for each room, who
follows it.

A room's new event moves its head for every follower who is a member. A message from
someone else is one more unread; the sender's own moves their watermark to it (their own
message is never unread for them). A change (edit, reaction) is not unread; a delete of a
message after the watermark is one unread less. A ``read_state`` moves a watermark and
brings history's count. Heads and watermarks only ever move forward, so events that arrive
twice or late change nothing.

The count is exact as long as events arrive in order, with one approximation: a
``read_state`` counted by history at an older head than the index has seen adds the events
in between as if each were a message from someone else (the usual case: messages arriving
while the mark was written); the next mark, or the next ``get_rooms``, is exact again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from chat_common.changes import DELETE

__all__ = ["InboxIndex", "RoomState"]


@dataclass(slots=True)
class RoomState:
    """One user's view of one room: what they have read, the room's head, and how many
    messages after the watermark others sent and nobody deleted."""

    read_seq: int
    last_seq: int
    unread: int = 0


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

    def add_user(self, user_id: str, rooms: Iterable[tuple[str, int, int, int]]) -> list[str]:
        """Follow ``user_id`` with ``(room, read_seq, last_seq, unread)`` (merged into what
        is known: the newer wins); returns the rooms nobody here followed before."""
        known = self._users.setdefault(user_id, {})
        new: list[str] = []
        for room_id, read_seq, last_seq, unread in rooms:
            if self._joined(user_id, known, room_id, RoomState(read_seq, last_seq, unread)):
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
        """``user_id`` became a member of ``room_id`` (everything before ``read_seq``
        read); whether the room is new here."""
        known = self._users.get(user_id)
        if known is None:
            return False
        return self._joined(user_id, known, room_id, RoomState(read_seq, last_seq))

    def left(self, user_id: str, room_id: str) -> bool:
        """``user_id`` left ``room_id``; whether nobody here follows the room any more."""
        known = self._users.get(user_id)
        if known is None or known.pop(room_id, None) is None:
            return False
        return self._drop(user_id, room_id)

    def read(self, user_id: str, room_id: str, read_seq: int, last_seq: int, unread: int) -> None:
        """A ``read_state``: history's count at its head ``last_seq``."""
        state = self._users.get(user_id, {}).get(room_id)
        if state is not None and read_seq > state.read_seq:
            state.read_seq = read_seq
            state.unread = _counted(state, RoomState(read_seq, last_seq, unread))
            state.last_seq = max(state.last_seq, last_seq, read_seq)

    def event(
        self,
        room_id: str,
        seq: int,
        sender: str | None,
        kind: str | None = None,
        target: int | None = None,
    ) -> list[tuple[str, RoomState]]:
        """An event at ``seq`` in ``room_id`` (a message, ``kind`` ``None``, or a change to
        the one at ``target``): the followers whose unread count or watermark it moved."""
        moved: list[tuple[str, RoomState]] = []
        for user_id in self._rooms.get(room_id, ()):
            state = self._users[user_id][room_id]
            if seq <= state.last_seq:
                continue
            state.last_seq = seq
            if kind is None:
                if sender == user_id:
                    state.read_seq, state.unread = max(state.read_seq, seq), 0
                else:
                    state.unread += 1
                moved.append((user_id, state))
            elif kind == DELETE and target is not None and target > state.read_seq:
                state.unread = max(0, state.unread - 1)
                moved.append((user_id, state))
        return moved

    def _joined(
        self, user_id: str, known: dict[str, RoomState], room_id: str, given: RoomState
    ) -> bool:
        state = known.get(room_id)
        if state is not None:
            if given.read_seq >= state.read_seq:
                state.unread = _counted(state, given)
            state.read_seq = max(state.read_seq, given.read_seq)
            state.last_seq = max(state.last_seq, given.last_seq)
            return False
        given.last_seq = max(given.last_seq, given.read_seq)
        known[room_id] = given
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


def _counted(state: RoomState, given: RoomState) -> int:
    """The unread count after history's ``given`` count (as of its head) meets what the
    index has: history's, plus the events the index has seen beyond history's head (each
    taken as a message from someone else; see the module docstring)."""
    return given.unread + max(0, state.last_seq - given.last_seq)
