"""The dev-stack servers start from their wheels, answer, keep data across restarts, and can
be killed, paused and resumed."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from chat_common.buspermissions import IDENTITIES, Identity
from chat_devstack import pguser
from chat_devstack.probes import nats_info, postgres_accepts, redis_ping
from chat_devstack.servers import NatsServer, PostgresServer, RedisServer, Server
from tests.support.bus import connect_as

pytestmark = pytest.mark.integration


PROBE = Identity(
    name="probe",
    used_by="this test: plain pub/sub and JetStream, which no part of the system uses",
    publishes=("devstack.>",),
    requests=("$JS.API.>",),
    subscribes=("devstack.>",),
)


@pytest.fixture
async def nats_server(tmp_path: Path) -> AsyncIterator[NatsServer]:
    server = NatsServer(tmp_path, identities=(*IDENTITIES, PROBE))
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    server = RedisServer(tmp_path)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def postgres_server(tmp_path: Path) -> AsyncIterator[PostgresServer]:
    server = PostgresServer(tmp_path)
    await server.start()
    yield server
    await server.stop()


async def _answers(server: Server, timeout: float = 0.5) -> bool:
    """Whether the server answers its protocol's hello within ``timeout`` seconds."""
    probes = {
        NatsServer: lambda: nats_info(server.host, server.port),
        RedisServer: lambda: redis_ping(server.host, server.port),
        PostgresServer: lambda: postgres_accepts(server.host, server.port),
    }
    try:
        async with asyncio.timeout(timeout):
            return await probes[type(server)]()
    except (TimeoutError, OSError):
        return False


async def _check_kill_pause_resume(server: Server) -> None:
    """Pause makes the server silent, resume brings it back, kill ends it, start revives it."""
    port = server.port
    server.pause()
    paused_answer = await _answers(server)
    server.resume()
    resumed_answer = await _answers(server, timeout=10)
    await server.kill()
    assert server.process is not None
    killed_code = server.process.returncode
    killed_answer = await _answers(server)
    await server.start()
    assert (paused_answer, resumed_answer, killed_answer) == (False, True, False)
    assert killed_code == -9
    assert server.port == port
    assert await _answers(server)


async def test_nats_pubsub_jetstream_survives_restart(nats_server: NatsServer) -> None:
    """NATS delivers a message, and a JetStream message persists across a graceful restart."""
    nc = await connect_as(nats_server.url, nats_server.seed_files, "probe")
    sub = await nc.subscribe("devstack.test")
    await nc.publish("devstack.test", b"hello")
    msg = await sub.next_msg(timeout=5)
    js = nc.jetstream()
    await js.add_stream(name="DEVSTACK", subjects=["devstack.js.>"])
    await js.publish("devstack.js.one", b"kept")
    await nc.close()

    port = nats_server.port
    await nats_server.restart()
    nc = await connect_as(nats_server.url, nats_server.seed_files, "probe")
    info = await nc.jetstream().stream_info("DEVSTACK")
    await nc.close()
    assert msg.data == b"hello"
    assert nats_server.port == port
    assert info.state.messages == 1


async def test_nats_kill_pause_resume(nats_server: NatsServer) -> None:
    """NATS can be paused, resumed, SIGKILLed and started again on the same port."""
    await _check_kill_pause_resume(nats_server)


async def test_redis_key_survives_graceful_restart(redis_server: RedisServer) -> None:
    """A key written before a graceful restart is read back afterwards; wipe() removes it."""
    client = aioredis.from_url(redis_server.url)
    await client.set("devstack:key", "kept")
    await client.aclose()
    port = redis_server.port

    await redis_server.restart()
    client = aioredis.from_url(redis_server.url)
    value = await client.get("devstack:key")
    await redis_server.wipe()
    after_wipe = await client.get("devstack:key")
    await client.aclose()
    assert redis_server.port == port
    assert value == b"kept"
    assert after_wipe is None


async def test_redis_kill_pause_resume(redis_server: RedisServer) -> None:
    """Redis can be paused, resumed, SIGKILLed and started again on the same port."""
    await _check_kill_pause_resume(redis_server)


async def test_postgres_table_survives_restart_and_crash(postgres_server: PostgresServer) -> None:
    """A committed row survives a fast restart, an immediate stop and a SIGKILL."""
    conn = await asyncpg.connect(postgres_server.dsn)
    await conn.execute("CREATE TABLE kept (id int PRIMARY KEY, body text)")
    await conn.execute("INSERT INTO kept VALUES (1, 'one')")
    await conn.close()

    await postgres_server.restart()
    await postgres_server.stop("immediate")
    await postgres_server.start()
    conn = await asyncpg.connect(postgres_server.dsn)
    await conn.execute("INSERT INTO kept VALUES (2, 'two')")
    await conn.close()
    await postgres_server.kill()
    await postgres_server.start()
    conn = await asyncpg.connect(postgres_server.dsn)
    rows = await conn.fetch("SELECT id, body FROM kept ORDER BY id")
    database = await conn.fetchval("SELECT current_database()")
    await conn.close()
    assert [tuple(row) for row in rows] == [(1, "one"), (2, "two")]
    assert database == "chat"


async def test_postgres_kill_pause_resume(postgres_server: PostgresServer) -> None:
    """Postgres can be paused, resumed, SIGKILLed and started again on the same port."""
    await _check_kill_pause_resume(postgres_server)


async def test_postgres_psql_helper(postgres_server: PostgresServer) -> None:
    """psql() runs SQL over TCP against the chat database."""
    output = await postgres_server.psql("SELECT current_database(), 1 + 1")
    assert output.strip() == "chat|2"


async def test_servers_share_a_data_dir_without_clashing(tmp_path: Path) -> None:
    """Three servers in one data dir use separate subdirs, ports and log files."""
    servers: list[Server] = [NatsServer(tmp_path), RedisServer(tmp_path), PostgresServer(tmp_path)]
    await asyncio.gather(*(s.start() for s in servers))
    try:
        ports = {s.port for s in servers}
        logs = [s.log_path for s in servers]
        answers = [await _answers(s) for s in servers]
    finally:
        await asyncio.gather(*(s.stop() for s in servers))
    assert len(ports) == 3
    assert all(log.is_file() and log.parent.parent == tmp_path for log in logs)
    assert answers == [True, True, True]


@pytest.mark.skipif(os.geteuid() != 0, reason="only root needs another identity for Postgres")
@pytest.mark.parametrize("userns", [True, False], ids=["user-namespace", "system-account"])
async def test_postgres_as_root_runs_unprivileged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, userns: bool
) -> None:
    """As root, Postgres runs as a non-root identity, even below a 0700 directory."""
    if userns and not await pguser.user_namespaces_work():
        pytest.skip("user namespaces are not allowed here")
    monkeypatch.setattr(pguser, "_userns_ok", userns)
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    server = PostgresServer(private / "data")
    await server.start()
    try:
        answer = await server.psql("SELECT 1")
    finally:
        await server.stop()
    assert server.run_as is not None
    assert server.run_as.uid != 0
    assert server.run_as.userns is userns
    assert answer.strip() == "1"
    if userns:  # nothing outside the data dir was touched
        assert stat.S_IMODE(private.stat().st_mode) == 0o700
