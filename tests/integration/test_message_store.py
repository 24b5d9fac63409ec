"""The message store's contract (``tests/contracts/message_store.py``) on Postgres, a
fresh, migrated database per test; and what only Postgres shows, its failures translated
into the store's own error. The same contract runs on the in-memory store in
``tests/unit/test_message_store.py``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from chat_common.errors import ErrorCode
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
