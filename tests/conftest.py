"""Fixtures: real NATS, Redis and Postgres servers, and the three services as processes.

* ``servers`` (session): one NATS, one Redis, one Postgres on free ports, shared by tests;
  every test isolates itself with its own room names.
* ``stack`` (session): one gateway, one session and one history process on those servers.
* ``make_stack`` (function): a private stack with its own NATS server, its own Postgres
  database and its own Redis key prefix, for tests that stop, kill or sabotage services
  without disturbing any other test.

Every NATS here runs with authorization and per-identity permissions, as in production: the
services get their own identity's NKey seed file; tests that use the bus themselves log in
with ``tests.support.bus.connect_as``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from chat_devstack.ha import RedisClusterNodes, RedisSentinelGroup
from chat_devstack.servers import NatsServer, PostgresServer, RedisServer
from chat_devstack.stack import Stack, StackConfig

FAST_SETTINGS = {
    # Authentication is tested on its own (tests/integration/test_security.py); elsewhere the
    # gateway runs in its explicit development mode.
    "GATEWAY_AUTH_MODE": "dev",
    # Load tests send far faster than a person; rate limiting has its own test.
    "GATEWAY_RATE_PER_S": "100000",
    "GATEWAY_RATE_BURST": "100000",
    "GATEWAY_READ_RATE_PER_S": "100000",
    "GATEWAY_READ_BURST": "100000",
    "SESSION_USER_RATE_PER_S": "100000",
    "SESSION_USER_RATE_BURST": "100000",
    # Short shutdown grace keeps service restarts in tests quick; behaviour is the same.
    "GATEWAY_SHUTDOWN_GRACE_S": "5",
    "SESSION_SHUTDOWN_GRACE_S": "5",
    "HISTORY_SHUTDOWN_GRACE_S": "5",
    "GATEWAY_REQUEST_TIMEOUT_S": "2",
    "GATEWAY_SEND_DEADLINE_S": "4",
}


@dataclass
class Servers:
    nats: NatsServer
    redis: RedisServer
    postgres: PostgresServer
    root: Path

    async def create_database(self) -> str:
        """A fresh, empty database on the shared Postgres; returns its DSN."""
        name = f"chat_{uuid.uuid4().hex[:10]}"
        conn = await asyncpg.connect(self.postgres.dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return self.postgres.dsn.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="session")
async def servers(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Servers]:
    root = tmp_path_factory.mktemp("servers")
    nats, redis, postgres = NatsServer(root), RedisServer(root), PostgresServer(root)
    await asyncio.gather(nats.start(), redis.start(), postgres.start())
    try:
        yield Servers(nats, redis, postgres, root)
    finally:
        await postgres.stop()
        await redis.stop()
        await nats.stop()


@pytest.fixture(scope="session")
async def redis_cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[RedisClusterNodes]:
    """A Redis Cluster of 6 nodes (3 primaries with a replica each), shared by tests that
    run the session store on both one Redis and a cluster (each test has its own prefix)."""
    cluster = RedisClusterNodes(tmp_path_factory.mktemp("redis-cluster"))
    try:
        await cluster.start()
        yield cluster
    finally:
        for node in cluster.nodes:
            await node.stop()


@pytest.fixture(scope="session")
async def redis_sentinel(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[RedisSentinelGroup]:
    """A Redis primary and replica under three Sentinels, shared like :func:`redis_cluster`."""
    group = RedisSentinelGroup(tmp_path_factory.mktemp("redis-sentinel"))
    try:
        await group.start()
        yield group
    finally:
        await group.stop()


@pytest.fixture(scope="session")
async def stack(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    config = StackConfig(
        data_dir=tmp_path_factory.mktemp("stack"),
        nats_url=servers.nats.url,
        nats_seed_files=servers.nats.seed_files,
        redis_url=servers.redis.url,
        postgres_dsn=servers.postgres.dsn,
        gateway_port=0,
        extra_env=dict(FAST_SETTINGS),
    )
    async with Stack(config) as running:
        yield running


@pytest.fixture
def gateway_url(stack: Stack) -> str:
    return stack.gateway_urls[0]


MakeStack = Callable[..., Awaitable[Stack]]


class PrivateStacks:
    """Private stacks (own NATS, own database, own Redis prefix or own Redis) under
    ``root``, made one by one and all stopped by :meth:`stop`."""

    def __init__(self, servers: Servers, root: Path) -> None:
        self._servers, self._root = servers, root
        self._started: list[tuple[Stack, list[NatsServer | RedisServer | PostgresServer]]] = []

    async def make(
        self,
        *,
        gateways: int = 1,
        sessions: int = 1,
        histories: int = 1,
        env: dict[str, str] | None = None,
        balancer: bool = False,
        shared_port: bool = False,
        own_redis: bool = False,
        own_postgres: bool = False,
        gateway_port: int = 0,
    ) -> Stack:
        index, tmp_path, servers = len(self._started), self._root, self._servers
        nats = NatsServer(tmp_path / f"nats-{index}")
        own: list[NatsServer | RedisServer | PostgresServer] = [nats]
        await nats.start()
        redis_url = servers.redis.url
        if own_redis:
            redis = RedisServer(tmp_path / f"redis-{index}")
            await redis.start()
            own.append(redis)
            redis_url = redis.url
        if own_postgres:
            postgres = PostgresServer(tmp_path / f"pg-{index}")
            await postgres.start()
            own.append(postgres)
            dsn = postgres.dsn
        else:
            dsn = await servers.create_database()
        config = StackConfig(
            data_dir=tmp_path / f"stack-{index}",
            gateways=gateways,
            sessions=sessions,
            histories=histories,
            nats_url=nats.url,
            nats_seed_files=nats.seed_files,
            redis_url=redis_url,
            postgres_dsn=dsn,
            gateway_port=gateway_port,
            balancer=balancer,
            shared_port=shared_port,
            extra_env={
                **FAST_SETTINGS,
                "SESSION_KEY_PREFIX": f"t{uuid.uuid4().hex[:8]}",
                **(env or {}),
            },
        )
        stack = Stack(config)
        stack.test_nats = nats  # type: ignore[attr-defined]
        stack.test_redis = next((x for x in own if isinstance(x, RedisServer)), None)  # type: ignore[attr-defined]
        stack.test_postgres = next((x for x in own if isinstance(x, PostgresServer)), None)  # type: ignore[attr-defined]
        self._started.append((stack, own))
        await stack.start()
        return stack

    async def stop(self) -> None:
        for stack, own in reversed(self._started):
            await stack.stop()
            for server in reversed(own):
                await server.stop()


@pytest.fixture
async def make_stack(servers: Servers, tmp_path: Path) -> AsyncIterator[MakeStack]:
    """Start private stacks (:class:`PrivateStacks`); all stopped at the end."""
    stacks = PrivateStacks(servers, tmp_path)
    yield stacks.make
    await stacks.stop()
