"""The Postgres pool: created with retries, migrated, monitored, and closed on shutdown.

The pool is created in the background: while Postgres is down the service is up but not
ready, and requests fail fast with ``UNAVAILABLE``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg

from chat_common.backoff import Backoff
from chat_common.errors import Unavailable
from chat_history.hostorder import HostOrder, dsn_hosts, with_host
from chat_history.metrics import POOL, POOL_ACQUIRE_TIMEOUTS
from chat_history.migrate import apply_migrations
from chat_history.settings import HistorySettings

__all__ = ["Database"]

_log = logging.getLogger("chat.history.db")


class Database:
    """Owns the asyncpg pool; ``pool`` raises ``UNAVAILABLE`` until it exists."""

    def __init__(self, settings: HistorySettings) -> None:
        self._s = settings
        self._pool: asyncpg.Pool | None = None
        self._read_pool: asyncpg.Pool | None = None
        self.connected = asyncio.Event()
        self.waiting = 0
        for state in ("size", "idle", "in_use", "waiting", "min", "max"):
            POOL.labels(state).set_function(self._stat_reader(state))

    def _stat_reader(self, state: str) -> Callable[[], float]:
        return lambda: float(self.pool_stats()[state])

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise Unavailable("database not connected yet")
        return self._pool

    async def connect_forever(self) -> None:
        """Create the pool and migrate (then the read pool, if configured), retrying with
        jittered backoff until it works."""
        backoff = Backoff(0.2, cap_s=5.0)
        read_dsn = self._s.postgres_read_dsn
        while self._pool is None or (read_dsn is not None and self._read_pool is None):
            try:
                if self._pool is None:
                    dsn = self._s.postgres_dsn.get_secret_value()
                    await self._migrate(dsn)
                    self._pool = await self._create_pool(dsn)
                if read_dsn is not None:
                    self._read_pool = await self._create_pool(
                        read_dsn.get_secret_value(), min_size=0
                    )
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                _log.warning("database not reachable yet", extra={"error": type(exc).__name__})
                await asyncio.sleep(backoff.next())
        self.connected.set()
        _log.info(
            "database ready", extra={"pool_min": self._s.pool_min, "pool_max": self._s.pool_max}
        )

    async def _migrate(self, dsn: str) -> None:
        """Apply the migrations on a connection of their own, without the pool's query
        timeouts: those bound an append or a page, and would cancel a migration that
        rewrites a big table at every try (a million rows take seconds to rewrite), so
        that the service would never get ready. Until it is done the service is not ready,
        and other instances wait on its advisory lock."""
        conn = await asyncpg.connect(
            dsn,
            server_settings={
                "statement_timeout": "0",
                "application_name": f"chat-history:{self._s.instance_id}:migrate",
            },
        )
        try:
            await apply_migrations(conn)
        finally:
            await conn.close()

    async def _create_pool(self, dsn: str, *, min_size: int | None = None) -> asyncpg.Pool:
        s = self._s
        return await asyncpg.create_pool(
            dsn,
            connect=_host_by_host(dsn),
            min_size=s.pool_min if min_size is None else min_size,
            max_size=s.pool_max,
            command_timeout=s.command_timeout_s,
            timeout=s.pool_acquire_timeout_s,
            reset=_keep_session,
            server_settings={
                "statement_timeout": str(s.statement_timeout_ms),
                "idle_in_transaction_session_timeout": str(s.idle_in_transaction_timeout_ms),
                "application_name": f"chat-history:{s.instance_id}",
            },
        )

    @contextlib.asynccontextmanager
    async def acquire(self, *, replica_ok: bool = False) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection, waiting at most the acquire timeout (then ``UNAVAILABLE``).

        ``replica_ok``: from the read pool when there is one and it has a connection to
        give; from the primary's otherwise."""
        if replica_ok and self._read_pool is not None:
            try:
                conn = await self._read_pool.acquire(timeout=self._s.pool_acquire_timeout_s)
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                _log.warning("read pool unavailable", extra={"error": type(exc).__name__})
            else:
                try:
                    yield conn
                finally:
                    await self._read_pool.release(conn)
                return
        pool = self.pool
        self.waiting += 1
        try:
            conn = await pool.acquire(timeout=self._s.pool_acquire_timeout_s)
        except TimeoutError:
            POOL_ACQUIRE_TIMEOUTS.inc()
            _log.warning(
                "no free database connection within the acquire timeout",
                extra={"waiting": self.waiting, "pool_max": self._s.pool_max},
            )
            raise Unavailable("database busy: no free connection") from None
        finally:
            self.waiting -= 1
        try:
            yield conn
        except (asyncpg.InternalClientError, TimeoutError):
            # The driver lost track of the connection's protocol state (seen once in a
            # failover under load: "another operation is in progress"), or a command got no
            # answer in time (the server may have gone silent: a partition, a frozen host):
            # never hand it out again, the next connect finds the primary as it is now
            # (:mod:`chat_history.hostorder`); the caller answers UNAVAILABLE
            # (pgstore.TRANSIENT_ERRORS) and retries.
            conn.terminate()
            raise
        finally:
            await pool.release(conn)

    async def keep_minimum(self, *, interval_s: float = 2.0) -> None:
        """Refill the pool to its minimum after connections died (Postgres restarted or
        failed over): asyncpg reconnects only on demand, so a quiet pool would otherwise
        stay below ``HISTORY_POOL_MIN`` and the next burst would pay the connects."""
        while True:
            await asyncio.sleep(interval_s)
            pool = self._pool
            if pool is None or pool.get_size() >= self._s.pool_min:
                continue
            # Holding the minimum at once makes the pool connect that many (it hands out
            # connected holders first); they go back at once.
            with contextlib.suppress(OSError, asyncpg.PostgresError, TimeoutError, Unavailable):
                async with contextlib.AsyncExitStack() as held:
                    for _ in range(self._s.pool_min):
                        await held.enter_async_context(self.acquire())

    async def check(self) -> None:
        """Readiness: the pool exists and a trivial query answers."""
        async with self.acquire() as conn:
            await conn.fetchval("SELECT 1")

    def pool_stats(self) -> dict[str, int | bool]:
        """``{size, idle, in_use, min, max, waiting, healthy}`` for ``/health/db-pool``."""
        s = self._s
        if self._pool is None:
            return {"size": 0, "idle": 0, "in_use": 0, "min": s.pool_min, "max": s.pool_max,
                    "waiting": self.waiting, "healthy": False}  # fmt: skip
        size = self._pool.get_size()
        idle = self._pool.get_idle_size()
        return {
            "size": size,
            "idle": idle,
            "in_use": size - idle,
            "min": s.pool_min,
            "max": s.pool_max,
            "waiting": self.waiting,
            "healthy": self.waiting == 0 or idle > 0,
        }

    async def close(self) -> None:
        for pool in (self._read_pool, self._pool):
            if pool is not None:
                await pool.close()


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """What a connection needs on its way back to the pool: nothing more.

    asyncpg still rolls back a transaction left open; its default reset would add a round
    trip per batch (``RESET ALL``, ``UNLISTEN *``...) for session state this service never
    changes: it sets no variables, listens to nothing and holds no advisory lock (the
    migrations take theirs on a connection of their own).
    """


def _host_by_host(dsn: str) -> Callable[..., Awaitable[asyncpg.Connection]]:
    """The pool's connect: with several hosts in ``dsn``, one host at a time, each with the
    whole connect timeout, the last that worked first (:mod:`chat_history.hostorder`)."""
    hosts = dsn_hosts(dsn)
    if len(hosts) < 2:
        single: Callable[..., Awaitable[asyncpg.Connection]] = asyncpg.connect
        return single
    order = HostOrder(hosts)

    async def connect(_dsn: str, **kwargs: Any) -> asyncpg.Connection:
        failure: BaseException | None = None
        for host in order.order():
            try:
                conn = await asyncpg.connect(with_host(dsn, host), **kwargs)
            except (
                OSError,
                TimeoutError,
                asyncpg.PostgresError,
                asyncpg.InterfaceError,
                asyncpg.InternalClientError,  # TargetServerAttributeNotMatched: a standby
            ) as exc:
                order.failed(host)
                failure = exc
                continue
            order.worked(host)
            return conn
        assert failure is not None
        raise failure

    return connect
