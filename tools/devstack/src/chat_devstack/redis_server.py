"""A Redis server with an append-only file in ``data_dir/redis`` (fsync every second)."""

from __future__ import annotations

from .binaries import redis_server_path
from .errors import DevstackError
from .probes import redis_command, redis_info
from .server_base import Server

__all__ = ["RedisServer"]


class RedisServer(Server):
    """``redis-server`` on ``127.0.0.1:port``: AOF on (``everysec``), RDB snapshots off.

    A graceful stop (SIGTERM) flushes the AOF, so every acknowledged write survives
    :meth:`restart`; :meth:`kill` may lose the last second, like a real crash.
    """

    name = "redis"
    dir_name = "redis"

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://{self.host}:{self.port}/0"

    def _argv(self) -> list[str]:
        return [
            str(redis_server_path()),
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", str(self.home),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "no",
            "--logfile", "",
        ]  # fmt: skip

    async def _ready(self) -> bool:
        if await redis_command(self.host, self.port, "PING") != b"+PONG":
            return False  # "-LOADING ..." while the AOF is replayed
        info = await redis_info(self.host, self.port, "server")
        return self.process is not None and info.get("process_id") == str(self.process.pid)

    async def command(self, *args: str | bytes) -> bytes:
        """Send one command; returns the first reply line (``b"+OK"``, ``b":1"``...)."""
        return await redis_command(self.host, self.port, *args)

    async def wipe(self) -> None:
        """``FLUSHALL``: every key is gone (the AOF records it too)."""
        reply = await self.command("FLUSHALL")
        if reply != b"+OK":
            raise DevstackError(f"FLUSHALL answered {reply!r}")
