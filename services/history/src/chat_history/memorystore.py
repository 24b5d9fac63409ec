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

import msgspec

from chat_common.changes import DELETE, EDIT, MESSAGE, REACT, UNREACT
from chat_common.schemas import Message, Reaction
from chat_common.timefmt import iso_ms
from chat_history.changelogic import ChangeBatch, EmojiCount, Snapshot, TargetState
from chat_history.store import Key, MessageStore, NewAppend, Stored

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
    """A row of ``rooms`` with its events (``messages``, in seq order), its messages'
    state (senders, edits, deletes, reactions) and its ``members``."""

    messages: list[Message] = field(default_factory=list)
    """Every event, as stored (seq ``n`` at index ``n - 1``)."""
    last_at: datetime | None = None
    """When the last message was stored (``None``: no message yet)."""
    members: dict[str, MemoryMember] = field(default_factory=dict)
    """user id -> membership."""
    senders: dict[int, str] = field(default_factory=dict)
    """seq -> sender, of every event."""
    edits: dict[int, tuple[str, str]] = field(default_factory=dict)
    """seq -> (text, ts) of each message's last edit."""
    deleted: set[int] = field(default_factory=set)
    reacted: set[tuple[int, str, str]] = field(default_factory=set)
    """(seq, emoji, user id) of each reaction."""
    counts: dict[int, dict[str, EmojiCount]] = field(default_factory=dict)
    """seq -> emoji -> its count (emojis with none are absent)."""

    @property
    def last_seq(self) -> int:
        return len(self.messages)

    def unread(self, user_id: str, read_seq: int) -> int:
        """Messages after ``read_seq`` that ``user_id`` did not send, deleted ones aside."""
        return sum(
            1
            for m in self.messages[read_seq:]
            if m.kind is None and m.seq not in self.deleted and self.senders[m.seq] != user_id
        )

    def as_now(self, message: Message, viewer: str | None) -> Message:
        """A message with its changes applied, reactions marked for ``viewer``."""
        seq = message.seq
        if seq in self.deleted:
            return msgspec.structs.replace(message, text="", deleted=True)
        text, edited_at = self.edits.get(seq, (message.text, None))
        counts = self.counts.get(seq)
        reactions = None
        if counts:
            reactions = [
                Reaction(emoji=e, count=c.count, me=(seq, e, viewer) in self.reacted)
                for e, c in sorted(counts.items(), key=lambda item: item[1].first_seq)
            ]
        return msgspec.structs.replace(message, text=text, edited_at=edited_at, reactions=reactions)

    def last_message(self, viewer: str | None) -> Message | None:
        """The newest message (not a change) as it is now, without its reactions (an
        inbox's preview)."""
        for message in reversed(self.messages):
            if message.kind is None:
                return msgspec.structs.replace(self.as_now(message, viewer), reactions=None)
        return None


class InMemoryMessageStore:
    """:class:`~chat_history.store.MessageStore` in this process's memory."""

    def __init__(self) -> None:
        self.rooms: dict[str, MemoryRoom] = {}
        """room id -> its state; shared with the in-memory chat state store."""
        self._by_key: dict[Key, int] = {}
        """key -> (room's) seq of the event stored under it."""

    def room(self, room_id: str) -> MemoryRoom:
        """``room_id``'s state, created empty if it has none (as an upsert of ``rooms``)."""
        room = self.rooms.get(room_id)
        if room is None:
            room = self.rooms[room_id] = MemoryRoom()
        return room

    async def append_batch(
        self, appends: Sequence[NewAppend], created_at: datetime
    ) -> tuple[dict[Key, Stored], int]:
        keys = [a.key for a in appends]
        if len(set(keys)) != len(keys):
            raise ValueError("appends of one batch must have distinct keys")
        ts = iso_ms(created_at)  # what a timestamptz column gives back: microseconds, UTC
        batch = ChangeBatch(self._snapshot(appends))
        found: dict[Key, Stored] = {}
        existed = 0
        for a in appends:
            seq = self._by_key.get(a.key)
            if seq is not None:
                found[a.key] = self.rooms[a.room_id].messages[seq - 1]
                existed += 1
                continue
            if a.kind != MESSAGE:
                refused = batch.judge(a.room_id, a.kind, a.target, a.sender, a.body)
                if refused is not None:
                    found[a.key] = refused
                    continue
            room = self.room(a.room_id)
            message = _event(a, room.last_seq + 1, ts)
            room.messages.append(message)
            room.senders[message.seq] = a.sender
            batch.accept(a.room_id, a.kind, a.target, a.sender, a.body, message.seq)
            if a.kind == MESSAGE:
                room.last_at = created_at if room.last_at is None else max(room.last_at, created_at)
                if (member := room.members.get(a.sender)) is not None:
                    member.read_seq = max(member.read_seq, message.seq)
            self._by_key[a.key] = message.seq
            found[a.key] = message
        self._apply(batch, ts)
        return found, existed

    def _snapshot(self, appends: Sequence[NewAppend]) -> Snapshot:
        snapshot = Snapshot()
        for a in appends:
            room = self.rooms.get(a.room_id)
            if a.kind == MESSAGE or a.target is None or room is None:
                continue
            if 1 <= a.target <= room.last_seq and room.messages[a.target - 1].kind is None:
                deleted = a.target in room.deleted
                state = TargetState(room.senders[a.target], deleted)
                snapshot.targets[(a.room_id, a.target)] = state
            if (member := room.members.get(a.sender)) is not None and member.role == "owner":
                snapshot.owners.add((a.room_id, a.sender))
            if (a.target, a.body, a.sender) in room.reacted:
                snapshot.reactions.add((a.room_id, a.target, a.body, a.sender))
            if (count := room.counts.get(a.target, {}).get(a.body)) is not None:
                snapshot.counts[(a.room_id, a.target, a.body)] = count
        return snapshot

    def _apply(self, batch: ChangeBatch, ts: str) -> None:
        """Write what the batch's accepted changes did (as the Postgres store does)."""
        for (room_id, target), (text, seq) in batch.edits.items():
            self.rooms[room_id].edits[target] = (text, self.rooms[room_id].messages[seq - 1].ts)
        for room_id, target in batch.deletes:
            room = self.rooms[room_id]
            room.deleted.add(target)
            room.edits.pop(target, None)
            room.counts.pop(target, None)
            room.reacted = {r for r in room.reacted if r[0] != target}
            for i, event in enumerate(room.messages):  # the text is erased, edits' too
                if event.seq == target or (event.kind == EDIT and event.target == target):
                    room.messages[i] = msgspec.structs.replace(event, text="")
        for room_id, target, emoji, user in batch.added:
            self.rooms[room_id].reacted.add((target, emoji, user))
        for room_id, target, emoji, user in batch.removed:
            self.rooms[room_id].reacted.discard((target, emoji, user))
        for (room_id, target, emoji), count in batch.counts.items():
            counts = self.rooms[room_id].counts.setdefault(target, {})
            if count is None:
                counts.pop(emoji, None)
            else:
                counts[emoji] = count
            if not counts:
                del self.rooms[room_id].counts[target]

    async def page(
        self,
        room_id: str,
        *,
        before_seq: int | None,
        after_seq: int | None,
        limit: int,
        replica_ok: bool = False,
        viewer: str | None = None,
    ) -> tuple[list[Message], int]:
        if limit < 0:
            raise ValueError("limit must not be negative")  # as Postgres' LIMIT
        room = self.rooms.get(room_id)
        if room is None:
            return [], 0
        events = room.messages
        head = len(events)
        # The event of seq n is events[n - 1]: seqs below before_seq end at index
        # before_seq - 1, seqs above after_seq start at index after_seq.
        end = head if before_seq is None else min(max(before_seq - 1, 0), head)
        if after_seq is not None:
            start = min(max(after_seq, 0), head)
            return events[start : min(end, start + limit)], head
        newest: list[Message] = []
        for event in reversed(events[:end]):
            if len(newest) == limit:
                break
            if event.kind is None:
                newest.append(room.as_now(event, viewer))
        newest.reverse()
        return newest, head

    async def changes(
        self, room_id: str, target: int, *, after_seq: int, limit: int
    ) -> tuple[list[Message], int]:
        room = self.rooms.get(room_id)
        if room is None:
            return [], 0
        found = [e for e in room.messages[after_seq:] if e.target == target]
        return found[:limit], room.last_seq


def _event(a: NewAppend, seq: int, ts: str) -> Message:
    """The event an append stores at ``seq``."""
    change = a.kind != MESSAGE
    return Message(
        id=a.id,
        room_id=a.room_id,
        seq=seq,
        email=a.email,
        text="" if a.kind in _NO_TEXT else a.body,
        ts=ts,
        client_msg_id=a.client_msg_id if a.client_supplied else None,
        kind=a.kind if change else None,
        target=a.target if change else None,
        emoji=a.body if a.kind in _NO_TEXT and a.kind != DELETE else None,
    )


_NO_TEXT = frozenset({DELETE, REACT, UNREACT})


def _conforms(store: InMemoryMessageStore) -> MessageStore:
    """Never called: mypy checks this return, so a signature that drifts from the
    interface fails ``make lint`` here, naming the member (a ``type[MessageStore]``
    annotation is checked too, but its error does not say which member differs)."""
    return store
