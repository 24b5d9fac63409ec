"""Where messages live: the store interface and its Postgres implementation.

:class:`PostgresMessageStore` holds everything Postgres-specific above the SQL
(:mod:`chat_history.repository`): which pool a call uses, and which database errors are
worth retrying (:data:`TRANSIENT_ERRORS`). An in-memory store with the same semantics is in
:mod:`chat_history.memorystore`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

import asyncpg

from chat_common.errors import Unavailable
from chat_common.schemas import Message
from chat_history import repository
from chat_history.database import Database
from chat_history.repository import Key, NewAppend

__all__ = ["TRANSIENT_ERRORS", "Key", "MessageStore", "NewAppend", "PostgresMessageStore"]

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    Unavailable,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
    asyncpg.UniqueViolationError,  # a concurrent batch stored the same key first
    asyncpg.QueryCanceledError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
)
"""Errors of :meth:`MessageStore.append_batch` after which the same batch may succeed
(retrying is safe: appends are idempotent by key). Any other error is for good."""


class MessageStore(Protocol):
    """Each room's messages, numbered 1, 2, 3... without gaps, keyed by ``(room_id,
    client_msg_id)``."""

    async def append_batch(
        self, appends: Sequence[NewAppend], created_at: datetime
    ) -> tuple[dict[Key, Message], int]:
        """Store ``appends`` (distinct keys) all together or none of them.

        A key already stored is answered with its stored message and nothing is written
        for it; the others get the next seqs of their room, in the order given, and
        ``created_at``. Returns every key's message and how many were already stored.
        Raises one of :data:`TRANSIENT_ERRORS` when trying again may work.
        """
        ...

    async def page(
        self,
        room_id: str,
        *,
        before_seq: int | None,
        after_seq: int | None,
        limit: int,
        replica_ok: bool = False,
    ) -> tuple[list[Message], int]:
        """Up to ``limit`` messages in ascending seq, and the room's last seq (0 for a room
        with none), as of one moment.

        With ``after_seq``: the oldest ones after it (and before ``before_seq`` if given).
        Otherwise: the newest ones before ``before_seq`` (or the newest of all).
        ``replica_ok``: the answer may lag a moment behind the latest commit. Raises
        :class:`~chat_common.errors.Unavailable` when the store cannot answer.
        """
        ...


class PostgresMessageStore:
    """:class:`MessageStore` in Postgres, through the pools of a :class:`Database`."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def append_batch(
        self, appends: Sequence[NewAppend], created_at: datetime
    ) -> tuple[dict[Key, Message], int]:
        # Database errors go up as they are: the writer retries the transient ones and
        # isolates the failing append for the others.
        if not appends:
            return {}, 0  # the statement needs one array per column, even empty ones
        async with self._db.acquire() as conn:
            return await repository.append_batch(conn, appends, created_at)

    async def page(
        self,
        room_id: str,
        *,
        before_seq: int | None,
        after_seq: int | None,
        limit: int,
        replica_ok: bool = False,
    ) -> tuple[list[Message], int]:
        try:
            async with self._db.acquire(replica_ok=replica_ok) as conn:
                return await repository.page(
                    conn, room_id, before_seq=before_seq, after_seq=after_seq, limit=limit
                )
        except TRANSIENT_ERRORS as exc:
            raise Unavailable("message store unavailable") from exc
        except asyncpg.PostgresError as exc:
            raise Unavailable("message store error") from exc
