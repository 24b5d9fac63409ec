"""Versioned schema migrations, applied idempotently at startup.

Files ``migrations/NNNN_name.sql`` are applied in order, each in its own transaction, under
a Postgres advisory lock so that several history instances starting together apply each
migration exactly once. Applied versions are recorded in ``schema_migrations``. A migration
may rewrite a big table: run them on a connection without query timeouts
(:class:`~chat_history.database.Database` gives them one of their own).
"""

from __future__ import annotations

import logging
from importlib import resources

import asyncpg

__all__ = ["MIGRATION_LOCK_ID", "apply_migrations", "available_migrations"]

MIGRATION_LOCK_ID = 7_402_913_551
_log = logging.getLogger("chat.history.migrations")


def available_migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration shipped with the package, in order."""
    found = []
    for entry in resources.files("chat_history.migrations").iterdir():
        if entry.name.endswith(".sql"):
            version, _, name = entry.name.removesuffix(".sql").partition("_")
            found.append((int(version), name, entry.read_text()))
    return sorted(found)


async def apply_migrations(conn: asyncpg.Connection, *, upto: int | None = None) -> list[int]:
    """Apply what is missing (up to version ``upto``, when given: tests of one migration
    stop there); returns the versions applied now."""
    applied_now: list[int] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version int PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, name, sql in available_migrations():
            if version in done or (upto is not None and version > upto):
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
                )
            _log.info("migration applied", extra={"version": version, "migration": name})
            applied_now.append(version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_ID)
    return applied_now
