"""SQL of a batch of appends with changes in it (edits, deletes, reactions): one
transaction, judged in Python by :class:`~chat_history.changelogic.ChangeBatch` between
reading the state its changes target and writing what they did.

A batch of messages only takes the one-statement path (``repository.append_batch``);
this one costs a few round trips more, for the rarer batches that hold a change.
Locks: the batch's rooms first, in room order (as an append of messages), so that their
heads, and the messages they hold, cannot move under the judgement; then the rows it
writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from chat_common.changes import DELETE, MESSAGE, REACT, UNREACT
from chat_history.changelogic import ChangeBatch, EmojiCount, Snapshot, TargetState
from chat_history.repository import EVENT_COLUMNS, to_message
from chat_history.store import Key, NewAppend, Stored

__all__ = ["append_changes"]

_LOCK_ROOMS = """
INSERT INTO rooms AS r (room_id, last_seq)
SELECT room_id, 0 FROM unnest($1::text[]) AS u(room_id) ORDER BY room_id
ON CONFLICT (room_id) DO UPDATE SET last_seq = r.last_seq
RETURNING r.room_id, r.last_seq
"""

_EXISTING = f"""
SELECT {EVENT_COLUMNS}, sender FROM messages
JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(room_id, client_msg_id, sender)
USING (room_id, client_msg_id, sender)
"""

_TARGETS = """
SELECT m.room_id, m.seq, m.sender, m.deleted_at IS NOT NULL AS deleted
FROM messages m JOIN unnest($1::text[], $2::bigint[]) AS t(room_id, seq) USING (room_id, seq)
WHERE m.kind = 'message'
"""

_OWNERS = """
SELECT m.room_id, m.user_id FROM members m
JOIN unnest($1::text[], $2::text[]) AS u(room_id, user_id) USING (room_id, user_id)
WHERE m.role = 'owner'
"""

_REACTED = """
SELECT r.room_id, r.target_seq, r.emoji, r.user_id FROM reactions r
JOIN unnest($1::text[], $2::bigint[], $3::text[], $4::text[])
    AS k(room_id, target_seq, emoji, user_id) USING (room_id, target_seq, emoji, user_id)
"""

_COUNTS = """
SELECT c.room_id, c.target_seq, c.emoji, c.count, c.first_seq FROM reaction_counts c
JOIN unnest($1::text[], $2::bigint[], $3::text[]) AS k(room_id, target_seq, emoji)
    USING (room_id, target_seq, emoji)
"""

_INSERT = """
INSERT INTO messages (room_id, seq, id, email, body, client_msg_id, client_supplied,
                      created_at, sender, kind, target_seq)
SELECT room_id, seq, id, email, body, client_msg_id, client_supplied, $12, sender, kind, target
FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[],
            $7::boolean[], $8::text[], $9::text[], $10::bigint[], $11::bigint[])
    AS e(room_id, seq, id, email, body, client_msg_id, client_supplied, sender, kind, target,
         ord)
ORDER BY ord
"""

_MOVE_HEADS = """
UPDATE rooms r SET last_seq = h.last_seq,
                   last_at = CASE WHEN h.messages THEN greatest(r.last_at, $4) ELSE r.last_at END
FROM unnest($1::text[], $2::bigint[], $3::boolean[]) AS h(room_id, last_seq, messages)
WHERE r.room_id = h.room_id
"""

_MOVE_SENDERS = """
UPDATE members m SET read_seq = s.seq
FROM unnest($1::text[], $2::text[], $3::bigint[]) AS s(room_id, user_id, seq)
WHERE m.room_id = s.room_id AND m.user_id = s.user_id AND m.read_seq < s.seq
"""

_EDIT = """
UPDATE messages m SET edited_body = e.body, edited_at = $4
FROM unnest($1::text[], $2::bigint[], $3::text[]) AS e(room_id, seq, body)
WHERE m.room_id = e.room_id AND m.seq = e.seq
"""

_DELETE = """
WITH d AS (SELECT * FROM unnest($1::text[], $2::bigint[]) AS d(room_id, seq)),
erased AS (
    UPDATE messages m SET body = '', edited_body = NULL, edited_at = NULL,
                          deleted_at = CASE WHEN m.kind = 'message' THEN $3::timestamptz END
    FROM d
    WHERE m.room_id = d.room_id
      AND (m.seq = d.seq OR (m.kind = 'edit' AND m.target_seq = d.seq))
),
reactions_gone AS (
    DELETE FROM reactions r USING d WHERE r.room_id = d.room_id AND r.target_seq = d.seq
)
DELETE FROM reaction_counts c USING d WHERE c.room_id = d.room_id AND c.target_seq = d.seq
"""

_ADD_REACTIONS = """
INSERT INTO reactions (room_id, target_seq, emoji, user_id)
SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[])
ON CONFLICT DO NOTHING
"""

_REMOVE_REACTIONS = """
DELETE FROM reactions r
USING unnest($1::text[], $2::bigint[], $3::text[], $4::text[]) AS k(room_id, target_seq, emoji,
                                                                     user_id)
WHERE (r.room_id, r.target_seq, r.emoji, r.user_id)
    = (k.room_id, k.target_seq, k.emoji, k.user_id)
"""

_SET_COUNTS = """
INSERT INTO reaction_counts AS c (room_id, target_seq, emoji, count, first_seq)
SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::integer[], $5::bigint[])
ON CONFLICT (room_id, target_seq, emoji)
DO UPDATE SET count = EXCLUDED.count, first_seq = EXCLUDED.first_seq
"""

_DROP_COUNTS = """
DELETE FROM reaction_counts c
USING unnest($1::text[], $2::bigint[], $3::text[]) AS k(room_id, target_seq, emoji)
WHERE (c.room_id, c.target_seq, c.emoji) = (k.room_id, k.target_seq, k.emoji)
"""


def _columns(rows: Sequence[tuple[object, ...]], n: int) -> list[list[object]]:
    """``rows`` as ``n`` column arrays (empty arrays when there are no rows)."""
    return [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in range(n)]


async def _snapshot(conn: asyncpg.Connection, changes: Sequence[NewAppend]) -> Snapshot:
    """The state of what ``changes`` target, read under the rooms' locks."""
    snapshot = Snapshot()
    rooms = [a.room_id for a in changes]
    for r in await conn.fetch(_TARGETS, rooms, [a.target for a in changes]):
        snapshot.targets[(r["room_id"], r["seq"])] = TargetState(r["sender"], r["deleted"])
    deletes = [a for a in changes if a.kind == DELETE]
    if deletes:
        owners = await conn.fetch(
            _OWNERS, [a.room_id for a in deletes], [a.sender for a in deletes]
        )
        snapshot.owners = {(r["room_id"], r["user_id"]) for r in owners}
    reactions = [a for a in changes if a.kind in (REACT, UNREACT)]
    if reactions:
        keys = _columns([(a.room_id, a.target, a.body, a.sender) for a in reactions], 4)
        for r in await conn.fetch(_REACTED, *keys):
            snapshot.reactions.add((r["room_id"], r["target_seq"], r["emoji"], r["user_id"]))
        for r in await conn.fetch(_COUNTS, *keys[:3]):
            emoji = (r["room_id"], r["target_seq"], r["emoji"])
            snapshot.counts[emoji] = EmojiCount(r["count"], r["first_seq"])
    return snapshot


async def append_changes(
    conn: asyncpg.Connection, appends: Sequence[NewAppend], created_at: datetime
) -> tuple[dict[Key, Stored], int]:
    """Store a batch that holds changes (see ``MessageStore.append_batch``), in one
    transaction."""
    found: dict[Key, Stored] = {}
    async with conn.transaction():
        heads = {
            r["room_id"]: int(r["last_seq"])
            for r in await conn.fetch(_LOCK_ROOMS, sorted({a.room_id for a in appends}))
        }
        keys = _columns([(a.room_id, a.client_msg_id, a.sender) for a in appends], 3)
        for r in await conn.fetch(_EXISTING, *keys):
            found[(r["room_id"], r["sender"], r["client_msg_id"])] = to_message(r)
        existed = len(found)
        fresh = [a for a in appends if a.key not in found]
        batch = ChangeBatch(await _snapshot(conn, [a for a in fresh if a.kind != MESSAGE]))
        rows: list[tuple[object, ...]] = []
        senders: dict[tuple[str, str], int] = {}
        rooms_with_messages: set[str] = set()
        for a in fresh:
            if a.kind != MESSAGE:
                refused = batch.judge(a.room_id, a.kind, a.target, a.sender, a.body)
                if refused is not None:
                    found[a.key] = refused
                    continue
            seq = heads[a.room_id] = heads[a.room_id] + 1
            batch.accept(a.room_id, a.kind, a.target, a.sender, a.body, seq)
            if a.kind == MESSAGE:
                senders[(a.room_id, a.sender)] = seq
                rooms_with_messages.add(a.room_id)
            rows.append((a.room_id, seq, a.id, a.email, a.body, a.client_msg_id,
                         a.client_supplied, a.sender, a.kind, a.target, len(rows)))  # fmt: skip
        if rows:
            inserted = await conn.fetch(
                _INSERT + f" RETURNING {EVENT_COLUMNS}, sender", *_columns(rows, 11), created_at
            )
            for r in inserted:
                found[(r["room_id"], r["sender"], r["client_msg_id"])] = to_message(r)
            await _write_effects(conn, batch, heads, senders, rooms_with_messages, created_at)
    return found, existed


async def _write_effects(
    conn: asyncpg.Connection,
    batch: ChangeBatch,
    heads: dict[str, int],
    senders: dict[tuple[str, str], int],
    rooms_with_messages: set[str],
    now: datetime,
) -> None:
    """The rooms' heads, the senders' watermarks, and what the changes did."""
    await conn.execute(
        _MOVE_HEADS, list(heads), list(heads.values()),
        [r in rooms_with_messages for r in heads], now,
    )  # fmt: skip
    if senders:
        rows = [(room, user, seq) for (room, user), seq in senders.items()]
        await conn.execute(_MOVE_SENDERS, *_columns(rows, 3))
    if batch.edits:
        edits = [(room, seq, text) for (room, seq), (text, _) in batch.edits.items()]
        await conn.execute(_EDIT, *_columns(edits, 3), now)
    if batch.deletes:
        await conn.execute(_DELETE, *_columns(list(batch.deletes), 2), now)
    if batch.added:
        await conn.execute(_ADD_REACTIONS, *_columns(list(batch.added), 4))
    if batch.removed:
        await conn.execute(_REMOVE_REACTIONS, *_columns(list(batch.removed), 4))
    kept = [(*e, c.count, c.first_seq) for e, c in batch.counts.items() if c is not None]
    gone = [e for e, c in batch.counts.items() if c is None]
    if kept:
        await conn.execute(_SET_COUNTS, *_columns(kept, 5))
    if gone:
        await conn.execute(_DROP_COUNTS, *_columns(gone, 3))
