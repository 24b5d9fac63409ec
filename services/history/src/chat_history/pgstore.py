"""The message store in Postgres: :class:`~chat_history.store.MessageStore` over the pools
of a :class:`~chat_history.database.Database`.

Everything Postgres-specific above the SQL (:mod:`chat_history.repository`) is here: which
pool a call uses, and which database errors are worth retrying (:data:`TRANSIENT_ERRORS`),
translated into the interface's :class:`~chat_history.store.StoreUnavailable`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from chat_common.changes import MESSAGE
from chat_common.errors import Unavailable
from chat_common.schemas import Message
from chat_history import changerepository, repository
from chat_history.database import Database
from chat_history.store import Key, MessageStore, NewAppend, Stored, StoreUnavailable

__all__ = ["TRANSIENT_ERRORS", "PostgresMessageStore"]

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    Unavailable,  # the pool is not there yet, or gave no connection in time (Database)
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,  # a connection whose state the driver lost: dropped (Database)
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
    asyncpg.UniqueViolationError,  # a concurrent batch stored the same key first
    asyncpg.QueryCanceledError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
)
"""Errors after which the same call may succeed: raised as
:class:`~chat_history.store.StoreUnavailable`. Any other error of an append is for good."""


class PostgresMessageStore:
    """:class:`~chat_history.store.MessageStore` in Postgres, through the pools of a
    :class:`Database`."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def append_batch(
        self, appends: Sequence[NewAppend], created_at: datetime
    ) -> tuple[dict[Key, Stored], int]:
        # The transient errors become StoreUnavailable (the writer retries the batch); the
        # others go up as they are (the writer isolates the failing append).
        if not appends:
            return {}, 0  # the statement needs one array per column, even empty ones
        messages_only = all(a.kind == MESSAGE for a in appends)
        try:
            async with self._db.acquire() as conn:
                if messages_only:
                    return await repository.append_batch(conn, appends, created_at)
                return await changerepository.append_changes(conn, appends, created_at)
        except TRANSIENT_ERRORS as exc:
            raise StoreUnavailable("message store unavailable") from exc

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
        try:
            async with self._db.acquire(replica_ok=replica_ok) as conn:
                return await repository.page(
                    conn,
                    room_id,
                    before_seq=before_seq,
                    after_seq=after_seq,
                    limit=limit,
                    viewer=viewer,
                )
        except TRANSIENT_ERRORS as exc:
            raise StoreUnavailable("message store unavailable") from exc
        except asyncpg.PostgresError as exc:
            raise StoreUnavailable("message store error") from exc

    async def changes(
        self, room_id: str, target: int, *, after_seq: int, limit: int
    ) -> tuple[list[Message], int]:
        try:
            async with self._db.acquire(replica_ok=True) as conn:
                return await repository.changes(
                    conn, room_id, target, after_seq=after_seq, limit=limit
                )
        except (*TRANSIENT_ERRORS, asyncpg.PostgresError) as exc:
            raise StoreUnavailable("message store unavailable") from exc


def _conforms(store: PostgresMessageStore) -> MessageStore:
    """Never called: mypy checks this return, so a signature that drifts from the
    interface fails ``make lint`` here, naming the member (a ``type[MessageStore]``
    annotation is checked too, but its error does not say which member differs)."""
    return store
