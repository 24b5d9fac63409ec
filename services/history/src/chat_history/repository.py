"""SQL of the history service; every function takes a connection and does no retrying."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from chat_common.schemas import Message
from chat_common.timefmt import iso_ms
from chat_history.batching import Key

__all__ = ["NewRow", "bump_rooms", "fetch_existing", "insert_messages", "last_seq", "page"]

NewRow = tuple[str, int, str, str, str, str, bool, datetime]
"""(room_id, seq, id, email, body, client_msg_id, client_supplied, created_at)"""

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


async def fetch_existing(conn: asyncpg.Connection, keys: Sequence[Key]) -> dict[Key, Message]:
    """Messages already stored under any of ``keys``."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM messages m"
        " JOIN unnest($1::text[], $2::text[]) AS k(room_id, client_msg_id)"
        " USING (room_id, client_msg_id)",
        [k[0] for k in keys],
        [k[1] for k in keys],
    )
    return {(r["room_id"], r["client_msg_id"]): to_message(r) for r in rows}


async def bump_rooms(conn: asyncpg.Connection, counts: Mapping[str, int]) -> dict[str, int]:
    """Reserve ``counts[room]`` sequence numbers per room; returns each room's new last seq.

    Rows are locked in the order of ``counts`` (callers pass rooms sorted) and stay locked
    until commit, so commits of one room happen in seq order.
    """
    rows = await conn.fetch(
        "INSERT INTO rooms AS r (room_id, last_seq)"
        " SELECT * FROM unnest($1::text[], $2::bigint[]) ORDER BY 1"
        " ON CONFLICT (room_id) DO UPDATE SET last_seq = r.last_seq + EXCLUDED.last_seq"
        " RETURNING room_id, last_seq",
        list(counts),
        list(counts.values()),
    )
    return {r["room_id"]: r["last_seq"] for r in rows}


async def insert_messages(conn: asyncpg.Connection, rows: Sequence[NewRow]) -> None:
    columns = list(zip(*rows, strict=True))
    await conn.execute(
        f"INSERT INTO messages ({_COLUMNS})"
        " SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[],"
        " $6::text[], $7::boolean[], $8::timestamptz[])",
        *[list(c) for c in columns],
    )


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
