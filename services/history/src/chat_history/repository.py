"""SQL of the history service; every function takes a connection and does no retrying."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from chat_common.changes import MESSAGE, REACT, UNREACT
from chat_common.schemas import Message, Reaction
from chat_common.timefmt import iso_ms
from chat_history.store import Key, NewAppend, Stored

__all__ = ["EVENT_COLUMNS", "append_batch", "changes", "page", "to_message"]

_COLUMNS = "room_id, seq, id, email, body, client_msg_id, client_supplied, created_at"
EVENT_COLUMNS = f"{_COLUMNS}, kind, target_seq"
"""The columns :func:`to_message` reads (a message as it is now adds ``edited_at``,
``deleted`` and ``reactions``)."""
_reactions = msgspec.json.Decoder(list[Reaction])


def to_message(row: Mapping[str, Any]) -> Message:
    """The :class:`Message` of a row with the columns of ``messages`` (``kind`` and
    ``target_seq`` when the row may be a change; a message as it is now also has
    ``edited_at``, ``deleted`` and ``reactions``, JSON)."""
    kind = row.get("kind")
    emoji = kind in (REACT, UNREACT)
    edited_at = row.get("edited_at")
    reactions = row.get("reactions")
    return Message(
        id=row["id"],
        room_id=row["room_id"],
        seq=row["seq"],
        email=row["email"],
        text="" if emoji else row["body"],
        ts=iso_ms(row["created_at"]),
        client_msg_id=row["client_msg_id"] if row["client_supplied"] else None,
        kind=None if kind in (None, MESSAGE) else kind,
        target=row.get("target_seq"),
        emoji=row["body"] if emoji else None,
        edited_at=iso_ms(edited_at) if edited_at is not None else None,
        deleted=bool(row.get("deleted")),
        reactions=_reactions.decode(reactions) if reactions is not None else None,
    )


_APPEND_BATCH = f"""
WITH k AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::boolean[], $7::text[])
        WITH ORDINALITY AS k(room_id, client_msg_id, id, email, body, client_supplied, sender,
                             ord)
),
existing AS (
    SELECT {", ".join(f"m.{c.strip()}" for c in EVENT_COLUMNS.split(","))}, m.sender
    FROM messages m JOIN k USING (room_id, client_msg_id, sender)
),
fresh AS (
    SELECT k.* FROM k
    WHERE NOT EXISTS (
        SELECT 1 FROM existing e
        WHERE e.room_id = k.room_id AND e.client_msg_id = k.client_msg_id
          AND e.sender = k.sender
    )
),
counts AS (
    SELECT room_id, count(*) AS n FROM fresh GROUP BY room_id
),
bumped AS (
    INSERT INTO rooms AS r (room_id, last_seq, last_at)
    SELECT room_id, n, $8 FROM counts ORDER BY room_id
    ON CONFLICT (room_id) DO UPDATE SET last_seq = r.last_seq + EXCLUDED.last_seq,
                                        last_at = greatest(r.last_at, EXCLUDED.last_at)
    RETURNING r.room_id, r.last_seq
),
inserted AS (
    INSERT INTO messages ({_COLUMNS}, sender)
    SELECT f.room_id,
           b.last_seq - c.n + row_number() OVER (PARTITION BY f.room_id ORDER BY f.ord),
           f.id, f.email, f.body, f.client_msg_id, f.client_supplied, $8, f.sender
    FROM fresh f JOIN counts c USING (room_id) JOIN bumped b USING (room_id)
    RETURNING {_COLUMNS}, sender
),
sent AS (
    SELECT room_id, sender, max(seq) AS seq FROM inserted GROUP BY room_id, sender
),
read AS (
    UPDATE members mb SET read_seq = s.seq FROM sent s
    WHERE mb.user_id = s.sender AND mb.room_id = s.room_id AND mb.read_seq < s.seq
)
SELECT {EVENT_COLUMNS}, sender, true AS existed FROM existing
UNION ALL
SELECT {_COLUMNS}, 'message', NULL, sender, false AS existed FROM inserted
"""


async def append_batch(
    conn: asyncpg.Connection, appends: Sequence[NewAppend], created_at: datetime
) -> tuple[dict[Key, Stored], int]:
    """Store a batch of *messages* in one statement (one round trip, one transaction);
    a batch with changes goes through :func:`chat_history.changerepository.append_changes`.

    ``appends`` have distinct ``(room_id, sender, client_msg_id)`` keys. Those already
    stored are answered as stored (found through the ``messages_idempotency`` index); the
    others get the next seqs of their room, in the order given, under the room row's lock
    (rows locked in room order, so batches cannot deadlock, and one room's commits happen
    in seq order). Returns every key's message and how many of them were already stored.

    The same statement moves each room's ``last_at`` to ``created_at`` and each sender's
    watermark (``members.read_seq``, if they are a member) to their newest new message:
    a room's head and its sender's read state commit together.
    """
    columns = [list(c) for c in zip(*appends, strict=True)][:7]  # kind and target: messages
    rows = await conn.fetch(_APPEND_BATCH, *columns, created_at)
    found: dict[Key, Stored] = {
        (r["room_id"], r["sender"], r["client_msg_id"]): to_message(r) for r in rows
    }
    return found, sum(1 for r in rows if r["existed"])


_HEAD = (
    "WITH head AS (SELECT coalesce((SELECT last_seq FROM rooms WHERE room_id = $1), 0) AS head_seq)"
)

_AFTER = f"""{_HEAD}
SELECT head.head_seq, m.* FROM head LEFT JOIN LATERAL (
    SELECT {EVENT_COLUMNS} FROM messages
    WHERE room_id = $1 AND seq > $2 AND ($3::bigint IS NULL OR seq < $3)
    ORDER BY seq LIMIT $4
) m ON true
"""
"""The events after a seq, as stored; with the head, in one statement (one snapshot)."""

_BEFORE = f"""{_HEAD}
SELECT head.head_seq, m.* FROM head LEFT JOIN LATERAL (
    SELECT room_id, seq, id, email, client_msg_id, client_supplied, created_at,
           CASE WHEN deleted_at IS NULL THEN coalesce(edited_body, body) ELSE '' END AS body,
           edited_at, deleted_at IS NOT NULL AS deleted,
           (SELECT json_agg(json_build_object(
                       'emoji', c.emoji, 'count', c.count,
                       'me', EXISTS (SELECT 1 FROM reactions r
                                     WHERE r.room_id = c.room_id AND r.target_seq = c.target_seq
                                       AND r.emoji = c.emoji AND r.user_id = $5))
                       ORDER BY c.first_seq)
            FROM reaction_counts c
            WHERE c.room_id = messages.room_id AND c.target_seq = messages.seq) AS reactions
    FROM messages
    WHERE room_id = $1 AND kind = 'message' AND $2::bigint IS NULL
      AND ($3::bigint IS NULL OR seq < $3)
    ORDER BY seq DESC LIMIT $4
) m ON true
"""
"""The newest messages before a seq as they are now; with the head, in one statement."""


async def page(
    conn: asyncpg.Connection,
    room_id: str,
    *,
    before_seq: int | None,
    after_seq: int | None,
    limit: int,
    viewer: str | None = None,
) -> tuple[list[Message], int]:
    """Up to ``limit`` items in ascending seq, and the room's last seq, as of one moment.

    With ``after_seq`` the oldest *events* after it, below ``before_seq`` when given (gap
    filling, replay: what the live stream carried); otherwise the newest *messages* before
    ``before_seq`` (or the newest of all) as they are now, i.e. scroll-back, with
    ``viewer``'s reactions marked. Page and head come from one statement, so a message
    committed in between cannot fall between them (a joiner would otherwise skip it).
    """
    if after_seq is not None:
        rows = await conn.fetch(_AFTER, room_id, after_seq, before_seq, limit)
    else:
        rows = await conn.fetch(_BEFORE, room_id, None, before_seq, limit, viewer)
    head = int(rows[0]["head_seq"]) if rows else 0
    messages = [to_message(r) for r in rows if r["seq"] is not None]
    if after_seq is None:
        messages.reverse()
    return messages, head


_CHANGES = f"""{_HEAD}
SELECT head.head_seq, m.* FROM head LEFT JOIN LATERAL (
    SELECT {EVENT_COLUMNS} FROM messages
    WHERE room_id = $1 AND target_seq = $2 AND seq > $3
    ORDER BY seq LIMIT $4
) m ON true
"""


async def changes(
    conn: asyncpg.Connection, room_id: str, target: int, *, after_seq: int, limit: int
) -> tuple[list[Message], int]:
    """The changes to one message after ``after_seq`` (through ``messages_changes``), and
    the room's last seq, in one statement."""
    rows = await conn.fetch(_CHANGES, room_id, target, after_seq, limit)
    head = int(rows[0]["head_seq"]) if rows else 0
    return [to_message(r) for r in rows if r["seq"] is not None], head
