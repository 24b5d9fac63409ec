"""The chat state store's contract (``tests/contracts/chat_state_store.py``) on Postgres, a
fresh, migrated database per test; and what only Postgres shows: its failures translated
into the store's own error, and migration 0002 on a database that has messages. The same
contract runs on the in-memory stores in ``tests/unit/test_chat_state_store.py``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from chat_common.chatstate import ReadMark
from chat_common.errors import ErrorCode
from chat_history.database import Database
from chat_history.migrate import apply_migrations, available_migrations
from chat_history.pgstate import PostgresChatStateStore
from chat_history.pgstore import PostgresMessageStore
from chat_history.settings import HistorySettings
from chat_history.store import StoreUnavailable
from tests.conftest import Servers
from tests.contracts.chat_state_store import ChatStateStoreContract, Stores
from tests.contracts.message_store import T0
from tests.support.historydb import migrated_database

pytestmark = pytest.mark.integration


@pytest.fixture
async def stores(servers: Servers) -> AsyncIterator[Stores]:
    """Fresh, empty stores on a database of their own."""
    db = await migrated_database(servers)

    def state_with(**settings: Any) -> PostgresChatStateStore:
        return PostgresChatStateStore(db, **settings)

    try:
        yield Stores(PostgresMessageStore(db), state_with(), state_with)
    finally:
        await db.close()


class TestPostgresChatStateStore(ChatStateStoreContract):
    """The contract on :class:`PostgresChatStateStore` beside :class:`PostgresMessageStore`."""


async def test_postgres_failures_are_unavailable(servers: Servers) -> None:
    """Reads and writes the database cannot serve fail with the store's UNAVAILABLE, the
    driver's error kept only as its cause."""
    db = await migrated_database(servers)
    store = PostgresChatStateStore(db)
    await db.close()
    calls = [
        store.join("u", "u@example.com", "r", now=T0),
        store.mark_read("u", [ReadMark(room_id="r", seq=1)], now=T0),
        store.user_rooms("u", limit=10),
    ]
    for call in calls:
        with pytest.raises(StoreUnavailable) as info:
            await call
        assert info.value.code is ErrorCode.UNAVAILABLE
        assert type(info.value.__cause__).__module__.startswith("asyncpg")


async def test_migration_0002_backfills_last_activity(servers: Servers) -> None:
    """On a database with messages stored under 0001, 0002 sets each room's last activity
    to its newest message's time (0003 then gives old messages their email as sender), and
    the state store then works on those rooms."""
    dsn = await servers.create_database()
    conn = await asyncpg.connect(dsn)
    try:
        version, name, sql = available_migrations()[0]
        assert (version, name) == (1, "messages")
        await conn.execute(sql)
        await conn.execute(
            "CREATE TABLE schema_migrations (version int PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now());"
            "INSERT INTO schema_migrations (version, name) VALUES (1, 'messages')"
        )
        await conn.execute("INSERT INTO rooms VALUES ('r', 2), ('empty', 0)")
        await conn.executemany(
            "INSERT INTO messages VALUES ('r', $1, $2, 'a@example.com', 'hi', $2, true, $3)",
            [(1, "m1", T0), (2, "m2", T0 + timedelta(minutes=3))],
        )
        assert await apply_migrations(conn) == [v for v, _, _ in available_migrations()[1:]]
        rooms = await conn.fetch("SELECT room_id, last_at FROM rooms ORDER BY room_id")
        senders = await conn.fetch("SELECT sender FROM messages")
    finally:
        await conn.close()
    assert [(r["room_id"], r["last_at"]) for r in rooms] == [
        ("empty", None), ("r", T0 + timedelta(minutes=3)),
    ]  # fmt: skip
    assert [s["sender"] for s in senders] == ["a@example.com", "a@example.com"]
    db = Database(HistorySettings(postgres_dsn=dsn))
    await db.connect_forever()
    try:
        store = PostgresChatStateStore(db)
        joined = (await store.join("u", "u@example.com", "r", now=T0)).result
        inbox = await store.inbox("u", after=None, limit=10, now=T0)
    finally:
        await db.close()
    assert (joined.role, joined.read_seq, joined.last_seq) == ("owner", 2, 2)
    assert inbox.rooms[0].last_message is not None
    assert inbox.rooms[0].last_activity == "2026-11-28T22:01:16.822Z"
