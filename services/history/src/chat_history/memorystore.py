"""Messages in memory: a :class:`~chat_history.store.MessageStore` with the semantics of
:class:`~chat_history.pgstore.PostgresMessageStore`, for fast tests of the logic above it.

No I/O and no clock of its own: a message's time is the ``created_at`` it was appended
with. Each method runs without yielding to the event loop, so it is one atomic step, as
each of the Postgres store's statements is. It has no server to lose, so it raises only
for a caller's mistake (repeated keys in one batch, a negative limit), and ``replica_ok``
changes nothing (there is no replica to lag).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from chat_common.schemas import Message
from chat_common.timefmt import iso_ms
from chat_history.store import Key, MessageStore, NewAppend

__all__ = ["InMemoryMessageStore"]


class InMemoryMessageStore:
    """:class:`~chat_history.store.MessageStore` in this process's memory."""

    def __init__(self) -> None:
        self._rooms: dict[str, list[Message]] = {}  # room -> its messages in seq order
        self._by_key: dict[Key, Message] = {}

    async def append_batch(
        self, appends: Sequence[NewAppend], created_at: datetime
    ) -> tuple[dict[Key, Message], int]:
        keys = [(room_id, client_msg_id) for room_id, client_msg_id, *_ in appends]
        if len(set(keys)) != len(keys):
            raise ValueError("appends of one batch must have distinct keys")
        ts = iso_ms(created_at)  # what a timestamptz column gives back: microseconds, UTC
        found: dict[Key, Message] = {}
        existed = 0
        for key, (room_id, client_msg_id, id_, email, body, client_supplied) in zip(
            keys, appends, strict=True
        ):
            stored = self._by_key.get(key)
            if stored is not None:
                found[key] = stored
                existed += 1
                continue
            room = self._rooms.setdefault(room_id, [])
            message = Message(
                id=id_,
                room_id=room_id,
                seq=len(room) + 1,
                email=email,
                text=body,
                ts=ts,
                client_msg_id=client_msg_id if client_supplied else None,
            )
            room.append(message)
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
        room = self._rooms.get(room_id, [])
        head = len(room)
        # The message of seq n is room[n - 1]: seqs below before_seq end at index
        # before_seq - 1, seqs above after_seq start at index after_seq.
        end = head if before_seq is None else min(max(before_seq - 1, 0), head)
        if after_seq is not None:
            start = min(max(after_seq, 0), head)
            return room[start : min(end, start + limit)], head
        return room[max(0, end - limit) : end], head


def _conforms(store: InMemoryMessageStore) -> MessageStore:
    """Never called: mypy checks this return, so a signature that drifts from the
    interface fails ``make lint`` here, naming the member (a ``type[MessageStore]``
    annotation is checked too, but its error does not say which member differs)."""
    return store
