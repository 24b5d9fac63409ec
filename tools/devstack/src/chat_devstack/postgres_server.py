"""A Postgres server we own as a child process (not daemonized by ``pg_ctl``).

Layout: ``data_dir/pg/data`` is PGDATA (``initdb`` runs when it has no ``PG_VERSION``),
``data_dir/pg/postgres.log`` the log, and the Unix socket goes in ``data_dir/pg`` unless
that path is too long for a socket. Clients use TCP on ``127.0.0.1:port``; auth is
``trust``; the ``chat`` database is created once the server is ready. When we are root the
server runs in a user namespace, or else as ``embedded_postgres`` (see
:mod:`chat_devstack.pguser`).
"""

from __future__ import annotations

import ipaddress
import signal
import tempfile
import time
from pathlib import Path
from typing import Literal

from .binaries import postgres_bin_dir
from .commands import run_command
from .pguser import postgres_identity, prepare_tree
from .probes import postgres_accepts
from .process import RunAs
from .server_base import Server

__all__ = ["PostgresServer", "StopMode"]

StopMode = Literal["smart", "fast", "immediate"]
_STOP_SIGNALS: dict[StopMode, signal.Signals] = {
    "smart": signal.SIGTERM,  # wait for clients to disconnect
    "fast": signal.SIGINT,  # roll back open transactions, checkpoint, exit
    "immediate": signal.SIGQUIT,  # exit now; crash recovery at the next start
}
_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes, including ".s.PGSQL.NNNNN"
_SUPERUSER = "postgres"


class PostgresServer(Server):
    """``postgres`` with ``fsync=on`` listening on ``127.0.0.1:port`` (database ``chat``)."""

    name = "postgres"
    dir_name = "pg"
    default_port = 5432
    stop_signal = signal.SIGINT
    death_signal = signal.SIGINT
    database = "chat"

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        start_timeout: float = 60.0,
        application_name: str = "chat-pg",
        upstream: PostgresServer | None = None,
    ) -> None:
        super().__init__(data_dir, port=port, host=host, start_timeout=start_timeout)
        self.application_name = application_name
        """How this server names itself to a primary it streams from (what
        ``synchronous_standby_names`` lists)."""
        self.upstream = upstream
        """The primary this server is a standby of; ``None``: it is a primary."""
        self.pgdata = self.home / "data"
        self.socket_dir = self.home
        self.run_as: RunAs | None = None
        """The identity the server runs as when we are root; ``None`` means ours."""
        self.initdb_seconds: float | None = None
        """How long ``initdb`` took, if the last start had to run it."""

    @property
    def dsn(self) -> str:
        """``postgresql://postgres@127.0.0.1:PORT/chat``."""
        return f"postgresql://{_SUPERUSER}@{self.host}:{self.port}/{self.database}"

    @property
    def url(self) -> str:
        """Same as :attr:`dsn`."""
        return self.dsn

    def _run_as(self) -> RunAs | None:
        return self.run_as

    async def _prepare(self) -> None:
        await super()._prepare()
        bin_dir = postgres_bin_dir()
        self.run_as = await postgres_identity()
        too_long = len(str(self.home)) > _MAX_SOCKET_PATH - len("/.s.PGSQL.65535")
        if too_long and self.socket_dir == self.home:
            self.socket_dir = Path(tempfile.mkdtemp(prefix="pgsock-"))
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        prepare_tree(self.home, self.run_as, bin_dir)
        if self.socket_dir != self.home:
            prepare_tree(self.socket_dir, self.run_as, bin_dir)
        if not (self.pgdata / "PG_VERSION").exists() and self.upstream is not None:
            # A standby starts as a copy of its primary, streaming WAL from there on.
            await run_command(
                [
                    str(bin_dir / "pg_basebackup"),
                    "-h", self.upstream.host,
                    "-p", str(self.upstream.port),
                    "-U", _SUPERUSER,
                    "-D", str(self.pgdata),
                    "-X", "stream",
                    "--checkpoint=fast",
                ],
                run_as=self.run_as,
            )  # fmt: skip
        if self.upstream is not None:
            await run_command(["touch", str(self.pgdata / "standby.signal")], run_as=self.run_as)
        if not (self.pgdata / "PG_VERSION").exists():
            began = time.monotonic()
            initdb = [
                str(bin_dir / "initdb"),
                "-D", str(self.pgdata),
                "-U", _SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
            ]  # fmt: skip
            await run_command(initdb, run_as=self.run_as)
            # In the config file, not on the command line: pg_rewind's own crash recovery
            # of a failed primary reads only the file, and must keep the WAL since the
            # point where the standby took over (a base backup copies the file).
            with (self.pgdata / "postgresql.conf").open("a") as conf:
                conf.write("\n# chat devstack: what pg_rewind needs\nwal_keep_size = '256MB'\n")
            if self.netns is not None:
                # On a test host: the other hosts (services, the standby) connect over the
                # test network, its /24 (a base backup copies this file to the standby).
                subnet = ipaddress.IPv4Interface(f"{self.host}/24").network
                with (self.pgdata / "pg_hba.conf").open("a") as hba:
                    hba.write(
                        f"\n# chat devstack: the test hosts\nhost all all {subnet} trust\n"
                        f"host replication all {subnet} trust\n"
                    )
            self.initdb_seconds = time.monotonic() - began

    def _argv(self) -> list[str]:
        return [
            str(postgres_bin_dir() / "postgres"),
            "-D", str(self.pgdata),
            "-p", str(self.port),
            "-h", self.host,
            "-k", str(self.socket_dir),
            "-c", "fsync=on",
            "-c", "synchronous_commit=on",
            "-c", "full_page_writes=on",
            "-c", "max_connections=200",
            # pg_rewind needs hint bits logged to bring a failed primary back as a standby.
            "-c", "wal_log_hints=on",
            *self._standby_args(),
        ]  # fmt: skip

    def _standby_args(self) -> list[str]:
        if self.upstream is None:
            return []
        conninfo = (
            f"host={self.upstream.host} port={self.upstream.port} user={_SUPERUSER}"
            f" application_name={self.application_name}"
        )
        return ["-c", f"primary_conninfo={conninfo}"]

    @property
    def is_standby(self) -> bool:
        """Whether this server is (configured as) a standby."""
        return self.upstream is not None

    async def promote(self) -> None:
        """Make this standby a primary (``pg_ctl promote``), as a failover tool would."""
        await run_command(
            [str(postgres_bin_dir() / "pg_ctl"), "promote", "-w", "-t", "60", "-D",
             str(self.pgdata)],
            run_as=self.run_as,
        )  # fmt: skip
        self.upstream = None

    async def rewind_from(self, primary: PostgresServer) -> None:
        """Bring this stopped former primary back in line with ``primary`` (``pg_rewind``,
        which first finishes its crash recovery), as that primary's standby; then start it."""
        source = f"host={primary.host} port={primary.port} user={_SUPERUSER} dbname=postgres"
        await run_command(
            [str(postgres_bin_dir() / "pg_rewind"), "--target-pgdata", str(self.pgdata),
             "--source-server", source],
            run_as=self.run_as,
            timeout=300.0,
        )  # fmt: skip
        self.upstream = primary
        await self.start()

    def _postmaster_status(self) -> list[str]:
        try:
            return (self.pgdata / "postmaster.pid").read_text().splitlines()
        except OSError:
            return []

    async def _ready(self) -> bool:
        lines = self._postmaster_status()
        ours = (
            self.process is not None
            and len(lines) >= 8
            and lines[0].strip() == str(self.process.pid)
            and lines[3].strip() == str(self.port)
            and lines[7].strip() in ("ready", "standby")
        )
        return ours and await postgres_accepts(self.host, self.port)

    async def _after_ready(self) -> None:
        if self.upstream is not None:
            return  # a standby has its primary's databases, and is read-only
        query = f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'"
        if (await self.psql(query, database="postgres")).strip() != "1":
            await self.psql(f'CREATE DATABASE "{self.database}"', database="postgres")

    async def psql(self, sql: str, *, database: str | None = None) -> str:
        """Run ``sql`` with ``psql`` over TCP; returns unaligned, tuples-only output."""
        argv = [
            str(postgres_bin_dir() / "psql"),
            "-X", "-q", "-t", "-A",
            "-v", "ON_ERROR_STOP=1",
            "-h", self.host,
            "-p", str(self.port),
            "-U", _SUPERUSER,
            "-d", database or self.database,
            "-c", sql,
        ]  # fmt: skip
        return await run_command(argv, timeout=30.0)

    async def stop(self, mode: StopMode = "fast", *, timeout: float = 30.0) -> int | None:
        """Shut down: ``fast`` (SIGINT, default), ``smart`` (SIGTERM) or ``immediate``
        (SIGQUIT); SIGKILL after ``timeout``. Returns the exit code."""
        if self.process is None:
            return None
        return await self.process.terminate(timeout, sig=_STOP_SIGNALS[mode])
