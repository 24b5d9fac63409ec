"""Composition root of the history service: settings, Postgres pool, message and chat state
stores, writer, endpoints."""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

from chat_common.lifecycle import Phase
from chat_common.runner import run_main
from chat_common.runtime import ServiceRuntime
from chat_common.subjects import HISTORY_SERVICE, history_endpoint
from chat_common.tracing import tracing_enabled
from chat_history.database import Database
from chat_history.fanout import publish_committed
from chat_history.handlers import HistoryHandlers
from chat_history.pgstate import PostgresChatStateStore
from chat_history.pgstore import PostgresMessageStore
from chat_history.settings import HistorySettings
from chat_history.statehandlers import ChatStateHandlers
from chat_history.writer import BatchWriter

__all__ = ["main", "run"]

VERSION = "0.1.0"


async def main(settings: HistorySettings | None = None) -> int:
    settings = settings or HistorySettings()
    if tracing_enabled():
        AsyncPGInstrumentor().instrument()  # type: ignore[no-untyped-call]
    db = Database(settings)

    async def db_pool(_request: web.Request) -> web.Response:
        stats = db.pool_stats()
        return web.json_response(stats, status=200 if stats["healthy"] else 503)

    runtime = ServiceRuntime(settings, name=HISTORY_SERVICE, routes={"/health/db-pool": db_pool})
    async with runtime as rt:
        rt.lifecycle.supervisor.spawn("db-connect", db.connect_forever, restart=True)
        rt.lifecycle.supervisor.spawn("db-pool-minimum", db.keep_minimum, restart=True)
        rt.lifecycle.on_shutdown(Phase.CLOSE_POOLS, "postgres", db.close)
        store = PostgresMessageStore(db)
        writer = BatchWriter(
            store,
            batch_max=settings.batch_max,
            linger_s=settings.batch_linger_ms / 1000,
            attempts=settings.batch_attempts,
            on_committed=publish_committed(rt.nc),
        )
        for n in range(settings.batch_writers):
            rt.lifecycle.supervisor.spawn(f"batch-writer-{n}", writer.run)
        handlers = HistoryHandlers(
            store, writer, max_page=settings.max_page, max_text=settings.max_text_length
        )
        state = ChatStateHandlers(
            PostgresChatStateStore(
                db,
                events_kept=settings.user_events_kept,
                listing_ttl=timedelta(seconds=settings.inbox_listing_ttl_s),
            ),
            rt.nc,
        )
        rt.add_check("postgres", db.check)
        await rt.serve(
            version=VERSION,
            endpoints={
                "append": handlers.append,
                "append_batch": handlers.append_batch,
                "fetch": handlers.fetch,
                **state.endpoints(),
            },
            subject=history_endpoint,
        )
        rt.mark_ready()
        await rt.lifecycle.wait_stopping()
    return runtime.exit_code


def run() -> None:
    """Console entry point ``chat-history``."""
    run_main(main)
