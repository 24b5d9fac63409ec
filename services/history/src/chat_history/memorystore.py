"""Messages in memory: a :class:`~chat_history.store.MessageStore` with the semantics of
:class:`~chat_history.pgstore.PostgresMessageStore`, for fast tests of the logic above it.

No I/O and no clock of its own: a message's time is the ``created_at`` it was appended
with. Each method runs without yielding to the event loop, so it is one atomic step, as
each of the Postgres store's statements is. It has no server to lose, so it raises only
for a caller's mistake (repeated keys in one batch, a negative limit), and ``replica_ok``
changes nothing (there is no replica to lag).

Its rooms (:class:`MemoryRoom`: messages, last activity, members with their watermarks)
are what Postgres' ``rooms``, ``messages`` and ``members`` tables are, shared with the
in-memory chat state store (:class:`~chat_history.memorystate.InMemoryChatStateStore`
takes this store), so that an append moves its sender's watermark as the Postgres append
does, in the same step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from chat_common.schemas import Message
from chat_common.timefmt import iso_ms
from chat_history.store import Key, MessageStore, NewAppend

__all__ = ["InMemoryMessageStore", "MemoryMember", "MemoryRoom"]


@dataclass(slots=True)
class MemoryMember:
    """A row of ``members``: one user's membership of one room."""

    email: str
    role: str
    read_seq: int
    joined_at: datetime


@dataclass(slots=True)
class MemoryRoom:
    """A row of ``rooms`` with its ``messages`` (in seq order) and its ``members``."""

    messages: list[Message] = field(default_factory=list)
    last_at: datetime | None = None
    """When the last message was stored (``None``: no message yet)."""
    members: dict[str, MemoryMember] = field(default_factory=dict)
    """user id -> membership."""

    @property
    def last_seq(self) -> int:
        return len(self.messages)


class InMemoryMessageStore:
    """:class:`~chat_history.store.MessageStore` in this process's memory."""

    def __init__(self) -> None:
        self.rooms: dict[str, MemoryRoom] = {}
        """room id -> its state; shared with the in-memory chat state store."""
        self._by_key: dict[Key, Message] = {}

    def room(self, room_id: str) -> MemoryRoom:
        """``room_id``'s state, created empty if it has none (as an upsert of ``rooms``)."""
        room = self.rooms.get(room_id)
        if room is None:
            room = self.rooms[room_id] = MemoryRoom()
        return room

    async def append_batch(
        self, appends: Sequence[NewAppend], created_at: datetime
    ) -> tuple[dict[Key, Message], int]:
        keys = [(room_id, sender, client_msg_id)
                for room_id, client_msg_id, *_, sender in appends]  # fmt: skip
        if len(set(keys)) != len(keys):
            raise ValueError("appends of one batch must have distinct keys")
        ts = iso_ms(created_at)  # what a timestamptz column gives back: microseconds, UTC
        found: dict[Key, Message] = {}
        existed = 0
        for key, (room_id, client_msg_id, id_, email, body, client_supplied, sender) in zip(
            keys, appends, strict=True
        ):
            stored = self._by_key.get(key)
            if stored is not None:
                found[key] = stored
                existed += 1
                continue
            room = self.room(room_id)
            message = Message(
                id=id_,
                room_id=room_id,
                seq=room.last_seq + 1,
                email=email,
                text=body,
                ts=ts,
                client_msg_id=client_msg_id if client_supplied else None,
            )
            room.messages.append(message)
            room.last_at = created_at if room.last_at is None else max(room.last_at, created_at)
            if (member := room.members.get(sender)) is not None:
                member.read_seq = max(member.read_seq, message.seq)
            self._by_key[key] = found[key] = message
        return found, existed

    async def page(
        self,
        room_id: str,
        *,
        before_seq: int | None,
        after_seq: int | None,
        limit: int,
        replica_ok: bool = False,
    ) -> tuple[list[Message], int]:
        if limit < 0:
            raise ValueError("limit must not be negative")  # as Postgres' LIMIT
        messages = self.rooms[room_id].messages if room_id in self.rooms else []
        head = len(messages)
        # The message of seq n is messages[n - 1]: seqs below before_seq end at index
        # before_seq - 1, seqs above after_seq start at index after_seq.
        end = head if before_seq is None else min(max(before_seq - 1, 0), head)
        if after_seq is not None:
            start = min(max(after_seq, 0), head)
            return messages[start : min(end, start + limit)], head
        return messages[max(0, end - limit) : end], head


def _conforms(store: InMemoryMessageStore) -> MessageStore:
    """Never called: mypy checks this return, so a signature that drifts from the
    interface fails ``make lint`` here, naming the member (a ``type[MessageStore]``
    annotation is checked too, but its error does not say which member differs)."""
    return store
