"""A Redis server with an append-only file in ``data_dir/redis`` (fsync every second)."""

from __future__ import annotations

from pathlib import Path

from .binaries import redis_server_path
from .errors import DevstackError
from .ports import free_port_pair
from .probes import redis_command, redis_info
from .server_base import Server

__all__ = ["CLUSTER_BUS_OFFSET", "RedisSentinel", "RedisServer"]

CLUSTER_BUS_OFFSET = 10000
"""A cluster node's peers reach it on its port + this (the cluster bus)."""


class RedisServer(Server):
    """``redis-server`` on ``127.0.0.1:port``: AOF on (``everysec``), RDB snapshots off.

    A graceful stop (SIGTERM) flushes the AOF, so every acknowledged write survives
    :meth:`restart`; :meth:`kill` may lose the last second, like a real crash.
    """

    name = "redis"
    dir_name = "redis"
    default_port = 6379

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        start_timeout: float = 60.0,
        cluster_node_timeout_ms: int | None = None,
        replica_of: RedisServer | None = None,
    ) -> None:
        super().__init__(data_dir, port=port, host=host, start_timeout=start_timeout)
        self.replica_of = replica_of
        """The primary this server replicates at its first start (Sentinel may change it)."""
        self.cluster_node_timeout_ms = cluster_node_timeout_ms
        """Set: a Redis Cluster node (``cluster-node-timeout``: how long a silent node takes
        to be failed over)."""

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
            *self._cluster_args(),
        ]  # fmt: skip

    def _free_port(self) -> int:
        if self.cluster_node_timeout_ms is None:
            return super()._free_port()
        return free_port_pair(CLUSTER_BUS_OFFSET, self.host)

    def _cluster_args(self) -> list[str]:
        if self.replica_of is not None:
            return ["--replicaof", self.replica_of.host, str(self.replica_of.port)]
        if self.cluster_node_timeout_ms is None:
            return []
        return [
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(self.home / "nodes.conf"),
            "--cluster-node-timeout", str(self.cluster_node_timeout_ms),
            # A replica takes over however long it was cut off from its primary: the AOF
            # and the gateways' heartbeats make up for what the replication had not sent.
            "--cluster-replica-validity-factor", "0",
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


class RedisSentinel(RedisServer):
    """A Redis Sentinel watching ``primary`` under the name ``service``: it fails the primary
    over to a replica once ``quorum`` sentinels have not heard from it for ``down_after_ms``.
    (A :class:`RedisServer` as far as starting and probing go.)"""

    name = "sentinel"
    dir_name = "sentinel"

    def __init__(
        self,
        data_dir: Path,
        primary: RedisServer,
        *,
        service: str = "chat",
        quorum: int = 2,
        down_after_ms: int = 1000,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(data_dir, host=host)
        self.primary, self.service = primary, service
        self.quorum, self.down_after_ms = quorum, down_after_ms

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}"

    def _argv(self) -> list[str]:
        conf = self.home / "sentinel.conf"
        if not conf.exists():  # Sentinel rewrites its file with what it learns: keep it
            s = self.service
            conf.write_text(
                f"sentinel monitor {s} {self.primary.host} {self.primary.port} {self.quorum}\n"
                f"sentinel down-after-milliseconds {s} {self.down_after_ms}\n"
                f"sentinel failover-timeout {s} 10000\n"
            )
        return [
            str(redis_server_path()), str(conf), "--sentinel",
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", str(self.home),
            "--daemonize", "no",
            "--logfile", "",
        ]  # fmt: skip
