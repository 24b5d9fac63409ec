"""The production topology under load, losing one node of each engine: a NATS cluster node,
a Redis Cluster primary, the Postgres primary (then promoting its synchronous standby).

One stack for the module (``chat-stack run --ha``'s topology: 3 NATS, 6 Redis, 2 Postgres,
2 instances of each service behind a balancer). Each scenario heals the topology before the
next: the NATS node and the Redis node come back (the Redis one as a replica), the failed
Postgres primary comes back as the new primary's standby (``pg_rewind``). Every scenario
counts lost, duplicated, out-of-order and unanswered messages, and whether each room's
member list is exactly its members at the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from chat_devstack.servers import NatsServer
from chat_devstack.stack import Stack
from tests.chaos.ha import churn_user, ha_config, ha_servers, kill_postgres_primary
from tests.chaos.harness import Fault, Outcome, fault, run_scenario
from tests.support.clients import SioClient, unique_room

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(900)]

FAILOVER_FIGURES: dict[str, float] = {}
"""Per scenario: seconds from the kill until the engine served again (for the report)."""


@pytest.fixture(scope="module")
async def ha_stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with Stack(ha_config(tmp_path_factory.mktemp("ha"))) as stack:
        yield stack


_ha = ha_servers


async def _clients(node: NatsServer) -> list[str]:
    """The names of the clients connected to ``node`` (``gateway:gateway-1``...)."""
    url = f"{node.monitor_url}/connz?limit=1000"
    async with aiohttp.ClientSession() as http, http.get(url) as reply:
        return [str(c.get("name", "")) for c in (await reply.json())["connections"]]


def kill_nats_node(hold_s: float) -> Fault:
    """SIGKILL the NATS node most gateways are connected to (ties: most clients), so that
    a gateway loses its node with messages in flight; start it again ``hold_s`` later."""

    async def inject(stack: Stack) -> float:
        nodes = _ha(stack).nats.nodes
        names = await asyncio.gather(*(_clients(n) for n in nodes))

        def weight(clients: list[str]) -> tuple[int, int]:
            return sum(name.startswith("gateway") for name in clients), len(clients)

        node = max(zip(nodes, names, strict=True), key=lambda pair: weight(pair[1]))[0]
        cut = max(names, key=weight)
        assert weight(cut)[0] >= 1, names  # 2 gateways, 3 nodes: one has a gateway
        FAILOVER_FIGURES["nats_clients_cut"] = len(cut)
        await node.kill()
        await asyncio.sleep(hold_s)
        await node.start()
        return time.monotonic()

    return inject


CHURNED: dict[str, int] = {}


def kill_redis_primary(rooms: list[str]) -> Fault:
    """SIGKILL a Redis Cluster primary while users join and leave; once its replica has
    taken over, start it again (it rejoins as a replica)."""

    async def inject(stack: Stack) -> float:
        cluster = _ha(stack).redis
        victim = (await cluster.primaries())[0]
        stop = asyncio.Event()
        churn = [
            asyncio.ensure_future(
                churn_user(stack.client_url, rooms, stop, f"churn{n}@example.com", CHURNED)
            )
            for n in range(4)
        ]
        began = time.monotonic()
        await victim.kill()
        await cluster.wait_taken_over(victim)
        FAILOVER_FIGURES["redis"] = round(time.monotonic() - began, 2)
        await victim.start()
        await cluster.wait_ok(timeout=60)
        stop.set()
        await asyncio.gather(*churn)
        return time.monotonic()

    return inject


def kill_postgres_standby(detect_s: float) -> Fault:
    """SIGKILL the synchronous standby: commits wait for it until, ``detect_s`` later, the
    failover tool lets the primary commit alone; then the standby comes back and commits
    wait for it again."""

    async def inject(stack: Stack) -> float:
        pair = _ha(stack).postgres
        began = time.monotonic()
        await pair.standby.kill()
        await asyncio.sleep(detect_s)
        await pair.commit_alone()
        FAILOVER_FIGURES["postgres_standby"] = round(time.monotonic() - began, 2)
        await pair.rejoin()
        return time.monotonic()

    return inject


def _assert_clean(outcome: Outcome) -> None:
    assert outcome.messages == 40 * 50
    counts = (outcome.lost, outcome.duplicated, outcome.out_of_order, outcome.hung)
    assert counts == (0, 0, 0, 0), outcome
    assert outcome.not_recovered == 0, outcome
    assert outcome.presence_wrong == 0, outcome
    if report := os.environ.get("CHAOS_REPORT"):
        line = {"topology": "ha", "failover_s": FAILOVER_FIGURES, "scenario": outcome.scenario}
        with Path(report).open("a") as out:
            out.write(json.dumps(line) + "\n")


async def test_a_nats_node_killed_under_load(ha_stack: Stack) -> None:
    """Services and gateways on the dead node reconnect to the others; requests in flight
    are retried; messages published meanwhile reach every member (gaps filled)."""
    outcome = await run_scenario(
        ha_stack, "HA: NATS node SIGKILL", kill_nats_node(2), check_presence=True
    )
    _assert_clean(outcome)


async def test_a_redis_primary_killed_under_load(ha_stack: Stack) -> None:
    """Its replica is promoted by the cluster; session calls to its slots fail for a moment
    and are retried; users who joined and left meanwhile are gone from every member list,
    everyone else is in theirs."""
    rooms = [unique_room("ha-redis") for _ in range(4)]
    outcome = await run_scenario(
        ha_stack,
        "HA: Redis primary SIGKILL",
        kill_redis_primary(rooms),
        room_ids=rooms,
        check_presence=True,
    )
    _assert_clean(outcome)
    assert len(CHURNED) == 4 and min(CHURNED.values()) > 0, CHURNED
    assert len(await _ha(ha_stack).redis.primaries()) == 3


async def test_the_postgres_primary_killed_then_the_standby_promoted(ha_stack: Stack) -> None:
    """Every message acknowledged before the kill was on the standby too (synchronous
    commit): the new primary has them all, once each, seqs without a gap. The old primary
    then comes back as the new one's standby, and commits wait for it again."""
    pair = _ha(ha_stack).postgres
    outcome = await run_scenario(
        ha_stack,
        "HA: Postgres primary SIGKILL + promotion",
        kill_postgres_primary(1.0, figures=FAILOVER_FIGURES),
        check_presence=True,
    )
    _assert_clean(outcome)
    await pair.rejoin()
    assert [(state, sync) for _, state, sync in await pair.replication()] == [
        ("streaming", "quorum")
    ]
    conn = await asyncpg.connect(ha_stack.postgres_dsn)
    try:
        gaps = await conn.fetchval(
            "SELECT count(*) FROM (SELECT seq - lag(seq) OVER (PARTITION BY room_id ORDER BY seq)"
            " AS step FROM messages) s WHERE step <> 1"
        )
    finally:
        await conn.close()
    assert gaps == 0


async def test_the_postgres_standby_killed_under_load(ha_stack: Stack) -> None:
    """Commits wait for the standby's flush, so losing it stalls acks until the failover
    tool drops the requirement; nothing is lost, and the standby streams again after."""
    outcome = await run_scenario(
        ha_stack, "HA: Postgres standby SIGKILL", kill_postgres_standby(1.0), check_presence=True
    )
    _assert_clean(outcome)
    pair = _ha(ha_stack).postgres
    assert [(state, sync) for _, state, sync in await pair.replication()] == [
        ("streaming", "quorum")
    ]


async def test_scroll_back_is_read_from_the_standby(ha_stack: Stack) -> None:
    """``get_history`` with ``beforeSeq`` goes to the read pool (the standby); the newest
    page (no ``beforeSeq``) comes from the primary."""
    room = unique_room("scroll")
    client = SioClient()
    await client.connect(ha_stack.client_url)
    try:
        assert (await client.call("join", {"email": "s@example.com", "roomId": room}))["ok"]
        for n in range(5):
            assert (await client.call("send_message", {"roomId": room, "text": f"m{n}"}))["ok"]
        standby = _ha(ha_stack).postgres.standby

        async def history_reads_on_standby() -> int:
            out = await standby.psql(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = 'chat'"
                " AND application_name LIKE 'chat-history:%' AND query LIKE '%FROM messages%'",
                database="postgres",
            )
            return int(out.strip())

        assert await history_reads_on_standby() == 0  # joins and sends use the primary
        page = await client.call("get_history", {"roomId": room, "beforeSeq": 6, "limit": 5})
        assert [m["text"] for m in page["messages"]] == [f"m{n}" for n in range(5)]
        assert await history_reads_on_standby() >= 1
    finally:
        await client.close()


SERVICE_SCENARIOS: dict[str, Fault] = {
    "HA: gateway SIGKILL + restart": fault("gateway", "kill", 2),
    "HA: session SIGKILL + restart": fault("session", "kill", 2),
    "HA: history SIGKILL + restart": fault("history", "kill", 2),
    "HA: gateway SIGTERM under load": fault("gateway", "term", 1),
    "HA: session SIGTERM under load": fault("session", "term", 1),
    "HA: history SIGTERM under load": fault("history", "term", 1),
}


@pytest.mark.parametrize("name", list(SERVICE_SCENARIOS))
async def test_service_chaos_on_the_ha_topology(ha_stack: Stack, name: str) -> None:
    """The chaos suite's service faults pass on the clustered engines too."""
    outcome = await run_scenario(ha_stack, name, SERVICE_SCENARIOS[name], check_presence=True)
    _assert_clean(outcome)
