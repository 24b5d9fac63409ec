"""Nothing acknowledged is ever lost: history, Postgres and pool faults under load."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from chat_devstack.stack import Stack
from tests.conftest import MakeStack
from tests.support.clients import NativeClient, SioClient, unique_room
from tests.support.http import get_json
from tests.support.traffic import Ledger, Sender, check_deliveries
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

Fault = Callable[[Stack], Awaitable[None]]


async def _verify_store(dsn: str, ledger: Ledger) -> None:
    """Every acked message is stored exactly once; each room's seqs are 1..n."""
    conn = await asyncpg.connect(dsn)
    try:
        for room, acked in ledger.acked.items():
            rows = await conn.fetch(
                "SELECT seq, id, client_msg_id FROM messages WHERE room_id = $1 ORDER BY seq", room
            )
            assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1)), f"gap in {room}"
            stored = {r["client_msg_id"]: r["id"] for r in rows}
            assert len(stored) == len(rows), f"duplicate clientMsgId in {room}"
            assert {k: m["id"] for k, m in acked.items()} == stored, (
                f"store and acks differ in {room}"
            )
    finally:
        await conn.close()


async def _run_under_fault(
    stack: Stack,
    *,
    clients: int,
    rooms: int,
    per_client: int,
    fault: Fault,
    at_fraction: float = 0.3,
) -> Ledger:
    url = stack.client_url
    room_ids = [unique_room("dur") for _ in range(rooms)]
    conns = [NativeClient() for _ in range(clients)]
    await asyncio.gather(*(c.connect(url) for c in conns))
    for i, c in enumerate(conns):
        assert (
            await c.call("join", {"email": f"d{i}@example.com", "roomId": room_ids[i % rooms]})
        )["ok"]
    ledger = Ledger()
    senders = [
        Sender(
            c, room_ids[i % rooms], ledger, name=f"c{i}", count=per_client, pause_s=0, timeout_s=15
        )
        for i, c in enumerate(conns)
    ]
    traffic = asyncio.ensure_future(asyncio.gather(*(s.run() for s in senders)))
    total = clients * per_client
    await asyncio.wait_for(ledger.reached(int(total * at_fraction)), 120)
    await fault(stack)
    await asyncio.wait_for(traffic, 300)
    assert ledger.total == total
    assert ledger.hung == 0, "a request got no answer within its timeout"
    for i, c in enumerate(conns):
        room = room_ids[i % rooms]
        await c.wait_messages(room, ledger.max_seq(room), timeout=60)
        check_deliveries(c, room, ledger)
    await asyncio.gather(*(c.close() for c in conns))
    return ledger


async def _kill_history_for_5s(stack: Stack) -> None:
    (history,) = stack.of_kind("history")
    await history.kill()
    await asyncio.sleep(5)  # the outage being simulated, not a synchronisation
    await history.start()


async def _restart_postgres_immediate(stack: Stack) -> None:
    postgres = stack.test_postgres  # type: ignore[attr-defined]
    await postgres.stop(mode="immediate")
    await postgres.start()


async def _postgres_unreachable_30s(stack: Stack) -> None:
    postgres = stack.test_postgres  # type: ignore[attr-defined]
    await postgres.stop(mode="fast")
    await asyncio.sleep(30)  # the outage being simulated
    await postgres.start()


async def test_history_killed_mid_load_loses_and_doubles_nothing(make_stack: MakeStack) -> None:
    """200 clients in 20 rooms send 20,000 messages; history is SIGKILLed at ~30% and
    restarted 5 s later: acked = stored exactly once, seqs gap-free, every member got all."""
    stack = await make_stack()
    ledger = await _run_under_fault(
        stack, clients=200, rooms=20, per_client=100, fault=_kill_history_for_5s
    )
    await _verify_store(stack.postgres_dsn, ledger)
    assert ledger.retries > 0, "the fault really interrupted sends"


@pytest.mark.parametrize(
    "fault",
    [_restart_postgres_immediate, _postgres_unreachable_30s],
    ids=["pg-immediate", "pg-down-30s"],
)
async def test_postgres_faults_mid_load_lose_and_double_nothing(
    make_stack: MakeStack, fault: Fault
) -> None:
    """Postgres restarted with -m immediate, or down for 30 s, mid-load: every send is
    answered within its timeout, lost = 0, dup = 0, and the service recovers by itself."""
    stack = await make_stack(own_postgres=True)
    ledger = await _run_under_fault(stack, clients=200, rooms=20, per_client=20, fault=fault)
    await _verify_store(stack.postgres_dsn, ledger)
    (history,) = stack.of_kind("history")

    async def pool_refilled() -> bool:
        _, pool = await get_json(f"http://127.0.0.1:{history.http_port}/health/db-pool")
        return pool["healthy"] is True and pool["size"] >= pool["min"]

    await eventually(pool_refilled, timeout=15, every=0.2)  # refilled when quiet too


async def test_concurrent_duplicates_and_a_retry_after_reconnect_store_one_row(
    make_stack: MakeStack,
) -> None:
    """Five concurrent sends of one clientMsgId plus one more after a reconnect: one row,
    six identical acks."""
    stack = await make_stack()
    room = unique_room()
    first = await SioClient().connect(stack.client_url)
    payload = {"roomId": room, "text": "only once", "clientMsgId": "same-id"}
    try:
        await first.call("join", {"email": "dup@example.com", "roomId": room})
        acks = await asyncio.gather(*(first.call("send_message", payload) for _ in range(5)))
    finally:
        await first.close()
    second = await NativeClient().connect(stack.client_url)
    try:
        await second.call("join", {"email": "dup@example.com", "roomId": room})
        acks.append(await second.call("send_message", payload))
    finally:
        await second.close()
    assert all(a["ok"] for a in acks)
    assert len({json.dumps(a["message"], sort_keys=True) for a in acks}) == 1
    conn = await asyncpg.connect(stack.postgres_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM messages WHERE room_id = $1", room) == 1
    finally:
        await conn.close()


async def test_pool_exhaustion_gives_unavailable_and_shows_in_pool_health(
    make_stack: MakeStack,
) -> None:
    """With a pool of 2 stuck on slow queries, callers get UNAVAILABLE after the acquire
    timeout and /health/db-pool reports waiting > 0 and healthy false; it recovers after."""
    stack = await make_stack(
        env={
            "HISTORY_POOL_MIN": "1",
            "HISTORY_POOL_MAX": "2",
            "HISTORY_POOL_ACQUIRE_TIMEOUT_S": "0.5",
            "HISTORY_STATEMENT_TIMEOUT_MS": "20000",
            "HISTORY_COMMAND_TIMEOUT_S": "20",
        }
    )
    (history,) = stack.of_kind("history")
    room = unique_room()
    client = await NativeClient().connect(stack.client_url)
    await client.call("join", {"email": "pool@example.com", "roomId": room})
    blocker = await asyncpg.connect(stack.postgres_dsn)
    tx = blocker.transaction()
    await tx.start()
    await blocker.execute("LOCK TABLE rooms IN ACCESS EXCLUSIVE MODE")  # every query now waits
    try:
        stuck = [
            asyncio.ensure_future(client.call("get_history", {"roomId": room}, timeout=30))
            for _ in range(2)
        ]
        pool_url = f"http://127.0.0.1:{history.http_port}/health/db-pool"
        pool: dict[str, object] = {}
        async with asyncio.timeout(15):
            while pool.get("in_use") != 2:
                _, pool = await get_json(pool_url)
        loop = asyncio.get_running_loop()
        began = loop.time()
        third = asyncio.ensure_future(client.call("get_history", {"roomId": room}, timeout=15))
        async with asyncio.timeout(15):
            while not (pool.get("waiting", 0) and pool.get("healthy") is False):
                _, pool = await get_json(pool_url)
        assert pool["in_use"] == 2 and pool["max"] == 2 and pool["idle"] == 0
        reply = await third
        assert reply["error"]["code"] == "UNAVAILABLE"
        assert loop.time() - began < 8
    finally:
        await tx.rollback()
        await blocker.close()
    results = await asyncio.gather(*stuck)
    # The gateway gives up on a stuck read at its deadline: a clear answer either way.
    assert all(r["ok"] or r["error"]["code"] == "UNAVAILABLE" for r in results)
    assert (await client.call("get_history", {"roomId": room}))["ok"] is True
    await client.close()


async def test_a_message_committed_but_never_published_is_filled_from_history(
    make_stack: MakeStack,
) -> None:
    """A gap (a history instance died between COMMIT and publish) is filled from history
    before later messages are delivered, so members still see every seq in order."""
    stack = await make_stack()
    room = unique_room()
    a, b = (
        await SioClient().connect(stack.client_url),
        await NativeClient().connect(stack.client_url),
    )
    try:
        await a.call("join", {"email": "a@example.com", "roomId": room})
        await b.call("join", {"email": "b@example.com", "roomId": room})
        first = await a.call("send_message", {"roomId": room, "text": "one"})
        conn = await asyncpg.connect(stack.postgres_dsn)
        try:  # what a dying history instance leaves behind: committed, never published
            await conn.execute("UPDATE rooms SET last_seq = last_seq + 1 WHERE room_id = $1", room)
            await conn.execute(
                "INSERT INTO messages (room_id, seq, id, email, body, client_msg_id, client_supplied, created_at, sender)"
                " VALUES ($1, 2, 'orphan-id', 'ghost@example.com', 'two', 'orphan', true, now(), 'ghost@example.com')",
                room,
            )
        finally:
            await conn.close()
        third = await a.call("send_message", {"roomId": room, "text": "three"})
        assert third["message"]["seq"] == 3
        for client in (a, b):
            got = await client.wait_messages(room, 3)
            assert [(m["seq"], m["text"]) for m in got] == [(1, "one"), (2, "two"), (3, "three")]
            assert got[0] == first["message"]
    finally:
        await a.close()
        await b.close()


async def test_history_starts_with_postgres_down_and_becomes_ready_by_itself(
    make_stack: MakeStack,
) -> None:
    """Started while Postgres is down, history stays up and not ready, then gets ready
    without a restart once Postgres is back."""
    stack = await make_stack(own_postgres=True)
    postgres = stack.test_postgres  # type: ignore[attr-defined]
    (history,) = stack.of_kind("history")
    await history.terminate()
    await postgres.stop()
    await history.start()
    base = f"http://127.0.0.1:{history.http_port}"
    body: dict[str, object] = {}
    async with asyncio.timeout(20):
        while True:
            try:
                status, body = await get_json(f"{base}/readyz")
            except OSError:
                continue  # not listening yet
            postgres_check = body["checks"].get("postgres", {})  # type: ignore[attr-defined]
            if status == 503 and postgres_check.get("ok") is False:
                break
    assert (await get_json(f"{base}/livez"))[0] == 200
    assert history.running
    await postgres.start()
    await history.wait_ready(timeout=30)
    client = await NativeClient().connect(stack.client_url)
    try:
        room = unique_room()
        await client.call("join", {"email": "late@example.com", "roomId": room})
        assert (await client.call("send_message", {"roomId": room, "text": "works"}))["ok"]
    finally:
        await client.close()
