"""The message store's contract (``tests/contracts/message_store.py``) on Postgres, a
fresh, migrated database per test; and what only Postgres shows: its failures translated
into the store's own error, and migrations free of the pool's query timeouts. The same
contract runs on the in-memory store in ``tests/unit/test_message_store.py``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from chat_common.errors import ErrorCode
from chat_history import database
from chat_history.database import Database
from chat_history.pgstore import PostgresMessageStore
from chat_history.settings import HistorySettings
from chat_history.store import MessageStore, StoreUnavailable
from tests.conftest import Servers
from tests.contracts.message_store import T0, MessageStoreContract

pytestmark = pytest.mark.integration


async def _database(servers: Servers) -> Database:
    db = Database(HistorySettings(postgres_dsn=await servers.create_database()))
    async with asyncio.timeout(30):
        await db.connect_forever()  # creates the pool and migrates
    return db


@pytest.fixture
async def store(servers: Servers) -> AsyncIterator[MessageStore]:
    """A fresh, empty store on a database of its own."""
    db = await _database(servers)
    try:
        yield PostgresMessageStore(db)
    finally:
        await db.close()


class TestPostgresMessageStore(MessageStoreContract):
    """The contract on :class:`PostgresMessageStore`."""


async def test_postgres_page_failure_is_unavailable(servers: Servers) -> None:
    """A page the database cannot serve fails with the store's UNAVAILABLE, not a database
    error."""
    db = await _database(servers)
    store = PostgresMessageStore(db)
    await db.close()
    with pytest.raises(StoreUnavailable) as info:
        await store.page("r", before_seq=None, after_seq=None, limit=10)
    assert info.value.code is ErrorCode.UNAVAILABLE


async def test_postgres_append_failure_is_store_unavailable(servers: Servers) -> None:
    """A batch the database cannot take fails with the store's own transient error (what
    the writer retries), the driver's error kept only as its cause."""
    db = await _database(servers)
    store = PostgresMessageStore(db)
    await db.close()
    with pytest.raises(StoreUnavailable) as info:
        await store.append_batch([("r", "a", "id-a", "a@example.com", "text", True, None)], T0)
    assert info.value.code is ErrorCode.UNAVAILABLE
    assert type(info.value.__cause__).__module__.startswith("asyncpg")


async def test_migrations_run_without_the_pools_query_timeouts(
    servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A migration longer than the pool's client and server query timeouts (as one that
    rewrites a big table is) completes, and the pool keeps its timeouts."""
    real = database.apply_migrations

    async def slow(conn: asyncpg.Connection) -> list[int]:
        await conn.execute("SELECT pg_sleep(0.5)")
        return await real(conn)

    monkeypatch.setattr(database, "apply_migrations", slow)
    settings = HistorySettings(
        postgres_dsn=await servers.create_database(), command_timeout_s=0.2,
        statement_timeout_ms=200,
    )  # fmt: skip
    db = Database(settings)
    try:
        async with asyncio.timeout(30):
            await db.connect_forever()
        async with db.acquire() as conn:
            with pytest.raises(asyncpg.QueryCanceledError):
                await conn.execute("SELECT pg_sleep(0.5)", timeout=5)
    finally:
        await db.close()
