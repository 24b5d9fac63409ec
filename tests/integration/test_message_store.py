"""The message store's contract (``tests/contracts/message_store.py``) on Postgres, a
fresh, migrated database per test; and what only Postgres shows: its failures translated
into the store's own error, migrations free of the pool's query timeouts, and migration
0003 (messages keyed by sender) on a database that has messages, as it is and prepared
online as docs/operations.md says. The same contract runs on the in-memory store in
``tests/unit/test_message_store.py``."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from chat_common.errors import ErrorCode
from chat_history import database
from chat_history.database import Database
from chat_history.migrate import apply_migrations, available_migrations
from chat_history.pgstore import TRANSIENT_ERRORS, PostgresMessageStore
from chat_history.settings import HistorySettings
from chat_history.store import MessageStore, NewAppend, StoreUnavailable
from tests.conftest import Servers
from tests.contracts.message_changes import MessageChangesContract
from tests.contracts.message_store import T0, MessageStoreContract
from tests.support.historydb import migrated_database
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
async def store(servers: Servers) -> AsyncIterator[MessageStore]:
    """A fresh, empty store on a database of its own."""
    db = await migrated_database(servers)
    try:
        yield PostgresMessageStore(db)
    finally:
        await db.close()


class TestPostgresMessageStore(MessageStoreContract, MessageChangesContract):
    """The contract on :class:`PostgresMessageStore`."""


async def test_postgres_page_failure_is_unavailable(servers: Servers) -> None:
    """A page the database cannot serve fails with the store's UNAVAILABLE, not a database
    error."""
    db = await migrated_database(servers)
    store = PostgresMessageStore(db)
    await db.close()
    with pytest.raises(StoreUnavailable) as info:
        await store.page("r", before_seq=None, after_seq=None, limit=10)
    assert info.value.code is ErrorCode.UNAVAILABLE


async def test_postgres_append_failure_is_store_unavailable(servers: Servers) -> None:
    """A batch the database cannot take fails with the store's own transient error (what
    the writer retries), the driver's error kept only as its cause."""
    db = await migrated_database(servers)
    store = PostgresMessageStore(db)
    await db.close()
    with pytest.raises(StoreUnavailable) as info:
        await store.append_batch(
            [NewAppend("r", "a", "id-a", "a@example.com", "text", True, "a")], T0
        )
    assert info.value.code is ErrorCode.UNAVAILABLE
    assert type(info.value.__cause__).__module__.startswith("asyncpg")


# -- migration 0003 -------------------------------------------------------------------------

_OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
_ROWS = ("SELECT room_id, seq, id, email, body, client_msg_id, client_supplied, created_at,"
         " sender FROM messages ORDER BY room_id, seq")  # fmt: skip
_UNIQUE = ("SELECT conname, pg_get_constraintdef(oid) AS def, conindid::regclass::text AS idx"
           " FROM pg_constraint WHERE conrelid = 'messages'::regclass AND contype = 'u'")  # fmt: skip
_INDEXES = "SELECT indexname FROM pg_indexes WHERE tablename = 'messages' ORDER BY indexname"
_SENDER_NOT_NULL = (
    "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'messages'::regclass"
    " AND attname = 'sender'"
)


async def _at_0002(servers: Servers) -> tuple[str, asyncpg.Connection]:
    """A database migrated up to 0002 (as the previous version left it), holding messages
    from before 0002 (no sender) and after (a user id), and a connection to it."""
    dsn = await servers.create_database()
    conn = await asyncpg.connect(dsn)
    await conn.execute(
        "CREATE TABLE schema_migrations (version int PRIMARY KEY, name text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    for version, name, sql in available_migrations()[:2]:
        await conn.execute(sql)
        await conn.execute("INSERT INTO schema_migrations VALUES ($1, $2)", version, name)
    await conn.execute("INSERT INTO rooms (room_id, last_seq) VALUES ('r', 3), ('q', 1)")
    minute = timedelta(minutes=1)
    await conn.executemany(
        "INSERT INTO messages VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        [
            ("r", 1, "m1", "ann@example.com", "old hi", "c-1", True, T0, None),
            ("r", 2, "m2", "bob@example.com", "old, no id", "gw-9", False, T0 + minute, None),
            ("r", 3, "m3", "ann@example.com", "newer", "c-2", True, T0 + 2 * minute, "user-ann"),
            ("q", 1, "m4", "bob@example.com", "elsewhere", "c-1", True, T0, "user-bob"),
        ],
    )
    return dsn, conn


def _prepared_online() -> list[str]:
    """The statements of docs/operations.md's online preparation of 0003, one by one."""
    text = _OPERATIONS.read_text()
    section = text[text.index("### Migration 0003") :]
    block = re.search(r"```sql\n(.*?)```", section, re.S)
    assert block is not None
    code = "\n".join(line for line in block[1].splitlines() if not line.startswith("--"))
    return [statement.strip() for statement in code.split(";") if statement.strip()]


async def test_migration_0003_keeps_every_message_and_keys_them_by_sender(
    servers: Servers,
) -> None:
    """0003 keeps every message as it was (id, seq, text, time) and gives those without a
    sender their email; after it, an old message's retry under that email (its user id in
    development mode) finds it, and another sender's clientMsgId already used in the room
    is a new message."""
    dsn, conn = await _at_0002(servers)
    try:
        before = [dict(r) for r in await conn.fetch(_ROWS)]
        assert await apply_migrations(conn, upto=3) == [3]
        after = [dict(r) for r in await conn.fetch(_ROWS)]
        unique = [dict(r) for r in await conn.fetch(_UNIQUE)]
        not_null = await conn.fetchval(_SENDER_NOT_NULL)
    finally:
        await conn.close()
    assert [r["sender"] for r in after] == [
        "user-bob", "ann@example.com", "bob@example.com", "user-ann"
    ]  # fmt: skip
    assert [r | {"sender": None} for r in after] == [r | {"sender": None} for r in before]
    assert not_null is True
    assert unique == [{"conname": "messages_idempotency", "idx": "messages_idempotency",
                       "def": "UNIQUE (room_id, client_msg_id, sender)"}]  # fmt: skip

    db = Database(HistorySettings(postgres_dsn=dsn))
    async with asyncio.timeout(30):
        await db.connect_forever()
    try:
        store = PostgresMessageStore(db)
        old, _ = await store.page("r", before_seq=None, after_seq=None, limit=10)
        found, existed = await store.append_batch(
            [NewAppend("r", "c-1", "id-x", "ann@example.com", "retry", True, "ann@example.com"),
             NewAppend("r", "c-1", "id-y", "bob@example.com", "bob's c-1", True, "user-bob")],
            T0 + timedelta(hours=1),
        )  # fmt: skip
        page, head = await store.page("r", before_seq=None, after_seq=None, limit=10)
    finally:
        await db.close()
    assert [(m.id, m.seq, m.text) for m in old] == [
        ("m1", 1, "old hi"), ("m2", 2, "old, no id"), ("m3", 3, "newer")
    ]  # fmt: skip
    assert existed == 1 and found[("r", "ann@example.com", "c-1")] == old[0]
    bobs = found[("r", "user-bob", "c-1")]
    assert (bobs.id, bobs.seq, bobs.text) == ("id-y", 4, "bob's c-1")
    assert (page, head) == ([*old, bobs], 4)


async def test_migration_0003_takes_what_was_prepared_online(servers: Servers) -> None:
    """After docs/operations.md's online preparation (run from that page), 0003 takes the
    index built beforehand as the key (the same index, renamed), drops the check that proved
    the senders, and leaves no other index behind; no message changed on the way."""
    _dsn, conn = await _at_0002(servers)
    try:
        before = [dict(r) for r in await conn.fetch(_ROWS)]
        for statement in _prepared_online():
            await conn.execute(statement)
        built = await conn.fetchval("SELECT to_regclass('messages_idempotency_0003')::oid")
        assert await apply_migrations(conn, upto=3) == [3]
        after = [dict(r) for r in await conn.fetch(_ROWS)]
        key = await conn.fetchval(
            "SELECT conindid FROM pg_constraint WHERE conname = 'messages_idempotency'"
        )
        checks = await conn.fetch(
            "SELECT conname FROM pg_constraint WHERE conrelid = 'messages'::regclass"
            " AND contype = 'c'"
        )
        indexes = [r["indexname"] for r in await conn.fetch(_INDEXES)]
        not_null = await conn.fetchval(_SENDER_NOT_NULL)
    finally:
        await conn.close()
    assert built is not None and key == built
    assert (checks, indexes, not_null) == ([], ["messages_idempotency", "messages_pkey"], True)
    assert [r | {"sender": None} for r in after] == [r | {"sender": None} for r in before]
    assert [r["sender"] for r in after] == [
        "user-bob", "ann@example.com", "bob@example.com", "user-ann"
    ]  # fmt: skip


async def test_migration_0003_drops_an_index_of_its_name_that_is_not_the_key(
    servers: Servers,
) -> None:
    """An index named as the prepared one but not the key (here: its columns in another
    order, as a hand-made or failed build may leave) is dropped and the key built."""
    _dsn, conn = await _at_0002(servers)
    try:
        await conn.execute(
            "CREATE UNIQUE INDEX messages_idempotency_0003"
            " ON messages (room_id, sender, client_msg_id)"
        )
        assert await apply_migrations(conn, upto=3) == [3]
        unique = [dict(r) for r in await conn.fetch(_UNIQUE)]
        indexes = [r["indexname"] for r in await conn.fetch(_INDEXES)]
    finally:
        await conn.close()
    assert unique == [{"conname": "messages_idempotency", "idx": "messages_idempotency",
                       "def": "UNIQUE (room_id, client_msg_id, sender)"}]  # fmt: skip
    assert indexes == ["messages_idempotency", "messages_pkey"]


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


async def test_a_connection_the_driver_lost_track_of_is_dropped(servers: Servers) -> None:
    """A connection on which asyncpg raised InternalClientError (its protocol state lost, as
    a failover under load once did) is terminated rather than handed out again, the error
    is one worth retrying (UNAVAILABLE to the caller), and the pool goes on serving."""
    db = await migrated_database(servers)
    try:
        with pytest.raises(asyncpg.InternalClientError):
            async with db.acquire() as conn:
                pid = conn.get_server_pid()
                raise asyncpg.InternalClientError("cannot switch to state 15")
        assert issubclass(asyncpg.InternalClientError, TRANSIENT_ERRORS)

        async def gone() -> bool:
            async with db.acquire() as conn:
                alive = "SELECT count(*) FROM pg_stat_activity WHERE pid = $1"
                return conn.get_server_pid() != pid and await conn.fetchval(alive, pid) == 0

        await eventually(gone, timeout=10)
    finally:
        await db.close()
