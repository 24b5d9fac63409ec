"""The history service's database for store tests: a fresh database of its own, pooled and
migrated by the service's own :class:`~chat_history.database.Database`."""

from __future__ import annotations

import asyncio

from chat_history.database import Database
from chat_history.settings import HistorySettings
from tests.conftest import Servers

__all__ = ["migrated_database"]


async def migrated_database(servers: Servers) -> Database:
    db = Database(HistorySettings(postgres_dsn=await servers.create_database()))
    async with asyncio.timeout(30):
        await db.connect_forever()  # creates the pool and migrates
    return db
