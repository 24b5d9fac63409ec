"""The production topology on one machine: a NATS cluster, a Redis Cluster and a Postgres
primary with a synchronous standby, from the same wheels as the single servers.

* :class:`NatsCluster`: 3 ``nats-server`` nodes joined by routes, sharing one set of NKeys;
  clients list every node's URL.
* :class:`RedisClusterNodes`: 6 ``redis-server`` nodes in cluster mode, made a cluster of 3
  primaries with one replica each by ``redis-cli --cluster create``. A dead primary's
  replica takes over after ``cluster-node-timeout``; a restarted node rejoins by itself.
* :class:`RedisSentinelGroup`: the other supported Redis setup, a primary and a replica
  watched by three Sentinels, which promote the replica when the primary dies.
* :class:`PostgresPair`: a primary and a standby streaming from it, the primary waiting for
  the standby's flush before it acknowledges a commit. Failover is not automatic in Postgres
  itself: :meth:`PostgresPair.fail_over` does what an operator's tool (Patroni,
  CloudNativePG) does when the primary dies, and :meth:`PostgresPair.rejoin` brings the old
  primary back as the new one's standby with ``pg_rewind``.

Every node is an ordinary :class:`~chat_devstack.server_base.Server` (its own port, data dir
and log), so the stack's supervisor restarts what dies, each kind in its own way
(:meth:`HaServers.restart_for`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

from .binaries import redis_cli_path
from .commands import run_command
from .errors import CommandError, DevstackError
from .hosts import Host
from .nats_server import ClusterRoutes, NatsServer
from .ports import free_port
from .postgres_server import PostgresServer
from .probes import redis_info
from .redis_server import RedisSentinel, RedisServer
from .server_base import Server

__all__ = [
    "SERVER_LABELS",
    "HaServers",
    "NatsCluster",
    "PostgresPair",
    "RedisClusterNodes",
    "RedisSentinelGroup",
]

SERVER_LABELS = (
    *(f"nats-{i}" for i in range(1, 4)),
    *(f"redis-{i}" for i in range(1, 7)),
    "pg-1",
    "pg-2",
)
"""The servers of the topology, as :class:`HaServers` names them (one test host each)."""

SYNC_STANDBYS = "ANY 1 (pg1, pg2)"
"""``synchronous_standby_names`` while both servers run: a commit waits for the other one."""


async def _until(check: Callable[[], Awaitable[bool]], what: str, timeout: float) -> None:
    """Poll ``check`` until it holds (``DevstackError`` after ``timeout``)."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                if await check():
                    return
            except (OSError, CommandError):
                pass  # not answering yet
            await asyncio.sleep(0.1)
    raise DevstackError(f"timed out waiting for {what}")  # pragma: no cover


class NatsCluster:
    """Three NATS servers in one cluster (``size`` of them), each with JetStream."""

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        size: int = 3,
        hosts: Sequence[Host] | None = None,
    ) -> None:
        if hosts is not None:  # each node on a test host of its own, at the usual ports
            size = len(hosts)
            routes = [f"{h.address}:{NatsServer.ROUTE_PORT}" for h in hosts]
        else:
            routes = [f"{host}:{free_port(host)}" for _ in range(size)]
        self.nodes: list[NatsServer] = []
        for i, route in enumerate(routes):
            peers = tuple(r for r in routes if r != route)
            keys = self.nodes[0].user_keys if self.nodes else None
            node = NatsServer(
                data_dir / f"nats-{i + 1}",
                host=host,
                monitor_port=0,
                cluster=ClusterRoutes("chat", int(route.rsplit(":", 1)[1]), peers),
                user_keys=keys,
            )
            if hosts is not None:
                node.place(hosts[i])
            self.nodes.append(node)

    @property
    def url(self) -> str:
        """Every node's URL, comma-separated (what the services' ``*_NATS_URL`` takes)."""
        return ",".join(n.url for n in self.nodes)

    @property
    def seed_files(self) -> dict[str, Path]:
        return self.nodes[0].seed_files

    async def start(self) -> None:
        await asyncio.gather(*(n.start() for n in self.nodes))


class RedisClusterNodes:
    """A Redis Cluster of ``size`` nodes: ``size / (replicas + 1)`` primaries."""

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        size: int = 6,
        replicas: int = 1,
        node_timeout_ms: int = 1000,
        hosts: Sequence[Host] | None = None,
    ) -> None:
        self.replicas = replicas
        size = len(hosts) if hosts is not None else size
        self.nodes = [
            RedisServer(
                data_dir / f"redis-{i + 1}", host=host, cluster_node_timeout_ms=node_timeout_ms
            )
            for i in range(size)
        ]
        for node, on in zip(self.nodes, hosts or (), strict=False):
            node.place(on)

    @property
    def url(self) -> str:
        """``redis+cluster://`` with every node (the session service's ``SESSION_REDIS_URL``)."""
        return "redis+cluster://" + ",".join(f"{n.host}:{n.port}" for n in self.nodes)

    async def cli(self, node: RedisServer, *args: str) -> str:
        """``redis-cli`` against ``node``; its output."""
        argv = [str(redis_cli_path()), "-h", node.host, "-p", str(node.port), *args]
        return await run_command(argv, timeout=60.0)

    async def state_ok(self, node: RedisServer) -> bool:
        """Whether ``node`` sees the cluster whole: every slot served, ``cluster_state:ok``."""
        info = await self.cli(node, "CLUSTER", "INFO")
        return "cluster_state:ok" in info and "cluster_slots_assigned:16384" in info

    async def start(self) -> None:
        """Start every node; make them a cluster unless they already are one (a restart)."""
        await asyncio.gather(*(n.start() for n in self.nodes))
        known = await self.cli(self.nodes[0], "CLUSTER", "INFO")
        if "cluster_slots_assigned:16384" not in known:
            await self.cli(
                self.nodes[0],
                "--cluster", "create",
                *(f"{n.host}:{n.port}" for n in self.nodes),
                "--cluster-replicas", str(self.replicas),
                "--cluster-yes",
            )  # fmt: skip
        await self.wait_ok()

    async def wait_ok(self, timeout: float = 60.0) -> None:
        """Wait until every running node sees the cluster whole."""

        async def all_ok() -> bool:
            running = [n for n in self.nodes if n.running]
            return all(await asyncio.gather(*(self.state_ok(n) for n in running)))

        await _until(all_ok, "the Redis Cluster to be whole", timeout)

    async def wait_taken_over(self, dead: RedisServer, timeout: float = 60.0) -> None:
        """Wait until the dead primary's replica has been promoted: the running nodes count
        as many primaries as the cluster had, and see it whole."""
        want = len(self.nodes) // (self.replicas + 1)

        async def promoted() -> bool:
            return not dead.running and len(await self.primaries()) == want

        await _until(promoted, "a replica to take over", timeout)
        await self.wait_ok(timeout)

    async def primaries(self) -> list[RedisServer]:
        """The running nodes that are primaries now (``ROLE``)."""
        found = []
        for node in self.nodes:
            if node.running and (await self.cli(node, "ROLE")).startswith("master"):
                found.append(node)
        return found


class RedisSentinelGroup:
    """A Redis primary, one replica and three Sentinels watching them (service ``chat``)."""

    def __init__(self, data_dir: Path, *, host: str = "127.0.0.1") -> None:
        primary = RedisServer(data_dir / "redis-1", host=host)
        replica = RedisServer(data_dir / "redis-2", host=host, replica_of=primary)
        self.nodes = [primary, replica]
        self.sentinels = [
            RedisSentinel(data_dir / f"sentinel-{i + 1}", primary, host=host) for i in range(3)
        ]

    @property
    def url(self) -> str:
        """``redis+sentinel://`` with every Sentinel, naming the primary ``chat``."""
        hosts = ",".join(f"{s.host}:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/chat"

    @property
    def servers(self) -> list[Server]:
        return [*self.nodes, *self.sentinels]

    async def start(self, timeout: float = 60.0) -> None:
        """Start the primary, the replica (waited for until its initial sync is done, so
        that writes from now on stream to it), then the Sentinels."""
        for node in self.nodes:
            await node.start()
        replica = self.nodes[1]

        async def synced() -> bool:
            info = await redis_info(replica.host, replica.port, "replication")
            return info.get("master_link_status") == "up"

        await _until(synced, "the replica's initial sync", timeout)
        await asyncio.gather(*(s.start() for s in self.sentinels))

    async def stop(self) -> None:
        for server in reversed(self.servers):
            await server.stop()


class PostgresPair:
    """``pg1`` (first primary) and ``pg2`` (its synchronous standby)."""

    def __init__(
        self, data_dir: Path, *, host: str = "127.0.0.1", hosts: Sequence[Host] | None = None
    ) -> None:
        first = PostgresServer(data_dir / "pg-1", host=host, application_name="pg1")
        second = PostgresServer(
            data_dir / "pg-2", host=host, application_name="pg2", upstream=first
        )
        self.nodes = [first, second]
        for node, on in zip(self.nodes, hosts or (), strict=False):
            node.place(on)
        self._replaced: PostgresServer | None = None
        """A primary that a failover replaced: it must be rewound before it can follow."""

    @property
    def primary(self) -> PostgresServer:
        return next(n for n in self.nodes if not n.is_standby)

    @property
    def standby(self) -> PostgresServer:
        return next(n for n in self.nodes if n.is_standby)

    def _dsn(self, attrs: str) -> str:
        hosts = ",".join(f"{n.host}:{n.port}" for n in self.nodes)
        return (
            f"postgresql://postgres@{hosts}/{PostgresServer.database}?target_session_attrs={attrs}"
        )

    @property
    def dsn(self) -> str:
        """Both servers; a client connects to whichever is the primary (``read-write``)."""
        return self._dsn("read-write")

    @property
    def read_dsn(self) -> str:
        """Both servers, the standby preferred: for reads that may lag a little."""
        return self._dsn("prefer-standby")

    async def start(self) -> None:
        """Start the primary, then the standby (a base backup at the first start), then
        make the primary's commits wait for it."""
        await self.primary.start()
        await self.standby.start()
        await self.require_sync()

    async def replication(self) -> list[tuple[str, str, str]]:
        """What the primary sees of its standbys: (application name, state, sync state)."""
        out = await self.primary.psql(
            "SELECT application_name, state, sync_state FROM pg_stat_replication",
            database="postgres",
        )
        rows = [line.split("|") for line in out.splitlines() if line.strip()]
        return [(r[0], r[1], r[2]) for r in rows]

    async def _set_sync(self, value: str) -> None:
        await self.primary.psql(
            f"ALTER SYSTEM SET synchronous_standby_names = '{value}'", database="postgres"
        )
        await self.primary.psql("SELECT pg_reload_conf()", database="postgres")

    async def require_sync(self, timeout: float = 60.0) -> None:
        """Once the standby streams, every commit on the primary waits for its flush."""
        await self._set_sync(SYNC_STANDBYS)

        async def synchronous() -> bool:
            rows = await self.replication()
            return any(state == "streaming" and sync == "quorum" for _, state, sync in rows)

        await _until(synchronous, "the standby to stream synchronously", timeout)

    async def fail_over(self) -> PostgresServer:
        """The primary is dead: promote the standby and let it commit alone until a standby
        is back (Patroni's non-strict ``synchronous_mode``). Returns the new primary."""
        if self.primary.running:
            raise DevstackError("the primary still runs: a failover would split the brain")
        return await self.promote_standby()

    async def promote_standby(self) -> PostgresServer:
        """Promote the standby while the primary may still run, cut off from everyone (a
        partition: the failover tool fences it by the network, and stops it once it can
        reach it again); the new primary commits alone until :meth:`rejoin`, which wants
        the old one stopped first. Returns the new primary."""
        old, new = self.primary, self.standby
        await new.promote()
        old.upstream = new  # it may only come back as the new primary's standby
        self._replaced = old
        await self.commit_alone()
        return new

    async def commit_alone(self) -> None:
        """Let the primary commit without a standby (until :meth:`rejoin`)."""
        await self._set_sync("")

    async def rejoin(self) -> None:
        """Bring the stopped standby back (after ``pg_rewind`` from the primary if it was the
        primary before) and make commits wait for it again."""
        node = self.standby
        if node.running:
            raise DevstackError(f"{node.application_name} already runs")
        if node is self._replaced:
            await node.rewind_from(self.primary)
            self._replaced = None
        else:
            await node.start()  # a standby that died: it streams on from where it stopped
        await self.require_sync()


class HaServers:
    """The three clustered engines of ``chat-stack run --ha``."""

    def __init__(
        self, data_dir: Path, *, host: str = "127.0.0.1", hosts: Mapping[str, Host] | None = None
    ) -> None:
        """``hosts``: each server on its own test host, by label (``nats-1``..``nats-3``,
        ``redis-1``..``redis-6``, ``pg-1``, ``pg-2``: :data:`SERVER_LABELS`)."""

        def on(prefix: str, n: int) -> list[Host] | None:
            return None if hosts is None else [hosts[f"{prefix}-{i + 1}"] for i in range(n)]

        self.nats = NatsCluster(data_dir / "ha", host=host, hosts=on("nats", 3))
        self.redis = RedisClusterNodes(data_dir / "ha", host=host, hosts=on("redis", 6))
        self.postgres = PostgresPair(data_dir / "ha", host=host, hosts=on("pg", 2))

        for server in self.servers:
            server.label = server.home.parent.name  # nats-1, redis-4, pg-2...

    @property
    def servers(self) -> list[Server]:
        return [*self.nats.nodes, *self.redis.nodes, *self.postgres.nodes]

    async def start(self) -> None:
        await asyncio.gather(self.nats.start(), self.redis.start(), self.postgres.start())

    async def stop(self, *, timeout: float) -> None:
        for server in reversed(self.servers):
            await server.stop(timeout=timeout)

    def restart_for(self, server: Server) -> Callable[[], Awaitable[None]]:
        """How the supervisor brings ``server`` back after it died: NATS and Redis nodes
        just start again (a Redis node rejoins its cluster, as a replica if its replica took
        over meanwhile); a Postgres primary is failed over to its standby first and comes
        back as the standby."""
        pair = self.postgres
        if server not in pair.nodes:
            return server.start
        assert isinstance(server, PostgresServer)
        node = server

        async def restart_postgres() -> None:
            if node.is_standby:
                await pair.commit_alone()
            else:
                await pair.fail_over()
            await pair.rejoin()

        return restart_postgres
