"""SQL of the history service; every function takes a connection and does no retrying."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from chat_common.schemas import Message
from chat_common.timefmt import iso_ms

__all__ = ["Key", "NewAppend", "append_batch", "last_seq", "page"]

Key = tuple[str, str]
"""(room_id, client_msg_id): the identity of a message."""

NewAppend = tuple[str, str, str, str, str, bool]
"""(room_id, client_msg_id, id, email, body, client_supplied)"""

_COLUMNS = "room_id, seq, id, email, body, client_msg_id, client_supplied, created_at"


def to_message(row: Mapping[str, Any]) -> Message:
    return Message(
        id=row["id"],
        room_id=row["room_id"],
        seq=row["seq"],
        email=row["email"],
        text=row["body"],
        ts=iso_ms(row["created_at"]),
        client_msg_id=row["client_msg_id"] if row["client_supplied"] else None,
    )


_APPEND_BATCH = f"""
WITH k AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::boolean[])
        WITH ORDINALITY AS k(room_id, client_msg_id, id, email, body, client_supplied, ord)
),
existing AS (
    SELECT {", ".join(f"m.{c.strip()}" for c in _COLUMNS.split(","))}
    FROM messages m JOIN k USING (room_id, client_msg_id)
),
fresh AS (
    SELECT k.* FROM k
    WHERE NOT EXISTS (
        SELECT 1 FROM existing e
        WHERE e.room_id = k.room_id AND e.client_msg_id = k.client_msg_id
    )
),
counts AS (
    SELECT room_id, count(*) AS n FROM fresh GROUP BY room_id
),
bumped AS (
    INSERT INTO rooms AS r (room_id, last_seq)
    SELECT room_id, n FROM counts ORDER BY room_id
    ON CONFLICT (room_id) DO UPDATE SET last_seq = r.last_seq + EXCLUDED.last_seq
    RETURNING r.room_id, r.last_seq
),
inserted AS (
    INSERT INTO messages ({_COLUMNS})
    SELECT f.room_id,
           b.last_seq - c.n + row_number() OVER (PARTITION BY f.room_id ORDER BY f.ord),
           f.id, f.email, f.body, f.client_msg_id, f.client_supplied, $7
    FROM fresh f JOIN counts c USING (room_id) JOIN bumped b USING (room_id)
    RETURNING {_COLUMNS}
)
SELECT {_COLUMNS}, true AS existed FROM existing
UNION ALL
SELECT {_COLUMNS}, false AS existed FROM inserted
"""


async def append_batch(
    conn: asyncpg.Connection, appends: Sequence[NewAppend], created_at: datetime
) -> tuple[dict[Key, Message], int]:
    """Store a batch of appends in one statement (one round trip, one transaction).

    ``appends`` have distinct ``(room_id, client_msg_id)`` keys. Those already stored are
    answered as stored; the others get the next seqs of their room, in the order given,
    under the room row's lock (rows locked in room order, so batches cannot deadlock, and
    one room's commits happen in seq order). Returns every key's message and how many of
    them were already stored.
    """
    columns = [list(c) for c in zip(*appends, strict=True)]
    rows = await conn.fetch(_APPEND_BATCH, *columns, created_at)
    found = {(r["room_id"], r["client_msg_id"]): to_message(r) for r in rows}
    return found, sum(1 for r in rows if r["existed"])


async def page(
    conn: asyncpg.Connection,
    room_id: str,
    *,
    before_seq: int | None,
    after_seq: int | None,
    limit: int,
) -> list[Message]:
    """Up to ``limit`` messages in ascending seq.

    With ``after_seq`` the oldest ones after it (gap filling, replay); otherwise the newest
    ones before ``before_seq`` (or the newest of all), i.e. scroll-back.
    """
    if after_seq is not None:
        rows = await conn.fetch(
            f"SELECT {_COLUMNS} FROM messages WHERE room_id = $1 AND seq > $2"
            " AND ($3::bigint IS NULL OR seq < $3) ORDER BY seq LIMIT $4",
            room_id,
            after_seq,
            before_seq,
            limit,
        )
        return [to_message(r) for r in rows]
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM messages WHERE room_id = $1"
        " AND ($2::bigint IS NULL OR seq < $2) ORDER BY seq DESC LIMIT $3",
        room_id,
        before_seq,
        limit,
    )
    return [to_message(r) for r in reversed(rows)]


async def last_seq(conn: asyncpg.Connection, room_id: str) -> int:
    value = await conn.fetchval("SELECT last_seq FROM rooms WHERE room_id = $1", room_id)
    return int(value or 0)
