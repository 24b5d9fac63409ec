"""A reusable chaos harness: load, a fault, and a checker that counts what went wrong.

* **Load**: N Socket.IO clients (recovering, reconnecting through the balancer) in R rooms,
  each sending its messages with unique clientMsgIds and retrying each until acked.
* **Faults**: on any of gateway, session, history, nats, redis, postgres: SIGKILL then
  restart, SIGSTOP then SIGCONT, SIGTERM then restart, or stop for a while then start.
* **Checker**: lost (acked but not stored, or not delivered to a member), duplicated
  (stored twice, or delivered twice), out of order (a member saw seqs go backwards or skip),
  hung (a request that got no answer within its timeout while connected), and the longest
  stall of acks (what the fault cost in availability).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import asyncpg

from chat_devstack.stack import Stack
from tests.support.clients import SioClient, unique_room
from tests.support.traffic import Ledger, Sender

__all__ = ["Fault", "Outcome", "fault", "kill_every", "report", "run_scenario", "stop_one"]

Fault = Callable[[Stack], Awaitable[float]]
"""Inject a fault and undo it; returns the monotonic time at which it ended."""

CHAOS_ENV = {
    "GATEWAY_SESSION_HEARTBEAT_S": "0.5",
    "HISTORY_POOL_ACQUIRE_TIMEOUT_S": "1",
    "HISTORY_COMMAND_TIMEOUT_S": "2",
}


@dataclass
class Outcome:
    scenario: str
    messages: int
    deliveries: int
    lost: int
    duplicated: int
    out_of_order: int
    hung: int
    retries: int
    max_stall_s: float
    """Longest time without any ack during the run: what the fault cost in availability."""
    reconnects: int
    not_recovered: int
    presence_wrong: int = 0
    """Rooms whose member list (``get_members``) was not exactly their members at the end,
    plus ``user_left`` events announcing a member who never left (counted only when asked
    for)."""


def _target(stack: Stack, name: str) -> Any:
    if name in ("gateway", "session", "history"):
        return stack.of_kind(name)[0]  # type: ignore[arg-type]
    return getattr(stack, f"test_{name}")


def fault(target: str, action: str, hold_s: float) -> Fault:
    """A fault: ``action`` is kill, stop (SIGSTOP), term or down (graceful stop), then back."""

    async def inject(stack: Stack) -> float:
        victim = _target(stack, target)
        if action == "stop":
            victim.pause()
            await asyncio.sleep(hold_s)  # the outage itself
            victim.resume()
            return time.monotonic()
        if action == "kill":
            await victim.kill()
        elif action == "term":
            process = victim if target in ("gateway", "session", "history") else victim.process
            assert process.pid is not None
            os.kill(process.pid, signal.SIGTERM)
            assert await process.wait() == 0, f"{target} did not exit 0 on SIGTERM"
        elif action == "down":
            await victim.stop()
        await asyncio.sleep(hold_s)  # the outage itself
        await victim.start()
        if target in ("gateway", "session", "history"):
            await victim.wait_ready(timeout=60)
        return time.monotonic()

    return inject


def stop_one(kind: str, action: str) -> Fault:
    """Stop the first instance of ``kind`` for good (``kill``: SIGKILL, ``term``: SIGTERM and
    a clean exit); the other instances carry the load from then on."""

    async def inject(stack: Stack) -> float:
        victim = stack.of_kind(kind)[0]  # type: ignore[arg-type]
        if action == "kill":
            await victim.kill()
        else:
            assert victim.pid is not None
            os.kill(victim.pid, signal.SIGTERM)
            assert await victim.wait() == 0, f"{victim.name} did not exit 0 on SIGTERM"
        return time.monotonic()

    return inject


def kill_every(kind: str, hold_s: float, *, while_down: Fault | None = None) -> Fault:
    """SIGKILL every instance of ``kind`` at once (a whole tier down, no peer to take
    over); ``hold_s`` later, and after ``while_down`` if given, start them all again and
    wait until each is ready."""

    async def inject(stack: Stack) -> float:
        victims = stack.of_kind(kind)  # type: ignore[arg-type]
        await asyncio.gather(*(v.kill() for v in victims))
        await asyncio.sleep(hold_s)  # the outage itself
        if while_down is not None:
            await while_down(stack)
        await asyncio.gather(*(v.start() for v in victims))
        await asyncio.gather(*(v.wait_ready(timeout=60) for v in victims))
        return time.monotonic()

    return inject


def _append_line(path: Path, line: str) -> None:
    with path.open("a") as out:
        out.write(line + "\n")


async def report(figures: dict[str, Any]) -> None:
    """Append ``figures`` as one JSON line to the file ``$CHAOS_REPORT`` names, if set."""
    if path := os.environ.get("CHAOS_REPORT"):
        await asyncio.to_thread(_append_line, Path(path), json.dumps(figures))


async def _check_store(dsn: str, ledger: Ledger) -> tuple[int, int]:
    """(lost, duplicated) between the acks and Postgres."""
    lost = duplicated = 0
    conn = await asyncpg.connect(dsn)
    try:
        for room, acked in ledger.acked.items():
            rows = await conn.fetch(
                "SELECT client_msg_id, id FROM messages WHERE room_id = $1", room
            )
            stored: dict[str, list[str]] = {}
            for row in rows:
                stored.setdefault(row["client_msg_id"], []).append(row["id"])
            duplicated += sum(len(ids) - 1 for ids in stored.values())
            lost += sum(1 for key, m in acked.items() if m["id"] not in stored.get(key, []))
    finally:
        await conn.close()
    return lost, duplicated


async def run_scenario(
    stack: Stack,
    name: str,
    inject: Fault,
    *,
    clients: int = 40,
    rooms: int = 4,
    per_client: int = 50,
    store_dsn: str | None = None,
    traffic_timeout_s: float = 600.0,
    room_ids: list[str] | None = None,
    check_presence: bool = False,
) -> Outcome:
    """Run the load, inject the fault, count what went wrong.

    ``store_dsn`` is where the checker reads Postgres (default: the stack's DSN).
    ``traffic_timeout_s`` bounds the wait for the load to finish once the fault is injected
    (``TimeoutError`` past it); on any failure the clients are closed before it propagates.
    ``room_ids`` names the rooms (a fault that needs to know them passes its own).
    ``check_presence`` also asks each room for its members once the load is over.
    """
    room_ids = room_ids or [unique_room("chaos") for _ in range(rooms)]
    conns = [SioClient(reconnection=True) for _ in range(clients)]
    await asyncio.gather(*(c.connect(stack.client_url) for c in conns))
    for i, c in enumerate(conns):
        assert (
            await c.call("join", {"email": f"k{i}@example.com", "roomId": room_ids[i % rooms]})
        )["ok"]
    ledger = Ledger()
    senders = [
        Sender(
            c,
            room_ids[i % rooms],
            ledger,
            name=f"k{i}",
            count=per_client,
            pause_s=0.02,
            timeout_s=15,
        )
        for i, c in enumerate(conns)
    ]
    traffic = asyncio.ensure_future(asyncio.gather(*(s.run() for s in senders)))
    total = clients * per_client
    try:
        await asyncio.wait_for(ledger.reached(total // 3), 120)
        await inject(stack)
        await asyncio.wait_for(traffic, traffic_timeout_s)
    except BaseException:
        traffic.cancel()
        await asyncio.gather(traffic, return_exceptions=True)
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
        raise
    times = sorted(ledger.ack_times)
    stall = max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    lost, duplicated = await _check_store(store_dsn or stack.postgres_dsn, ledger)
    out_of_order = deliveries = 0
    for i, c in enumerate(conns):
        room = room_ids[i % rooms]
        expected = ledger.max_seq(room)
        with contextlib.suppress(TimeoutError):  # what is missing is counted below
            await c.wait_messages(room, expected, timeout=60)
        seqs = [m["seq"] for m in c.of("new_message") if m["roomId"] == room]
        deliveries += len(seqs)
        duplicated += len(seqs) - len(set(seqs))
        out_of_order += sum(1 for a, b in itertools.pairwise(seqs) if b != a + 1)
        lost += len(set(range(1, expected + 1)) - set(seqs))
    presence_wrong = 0
    if check_presence:
        for r, room in enumerate(room_ids):
            members = {f"k{i}@example.com" for i in range(r, clients, rooms)}
            page = await conns[r].call("get_members", {"roomId": room, "limit": 1000})
            presence_wrong += set(page["users"]) != members or page["userCount"] != len(members)
        # No member ever left: a user_left for one is wrong even if a later restore healed
        # the member list without telling anyone.
        everyone = {f"k{i}@example.com" for i in range(clients)}
        presence_wrong += sum(e["email"] in everyone for c in conns for e in c.of("user_left"))
    outcome = Outcome(
        scenario=name,
        messages=ledger.total,
        deliveries=deliveries,
        lost=lost,
        duplicated=duplicated,
        out_of_order=out_of_order,
        hung=ledger.hung,
        retries=ledger.retries,
        max_stall_s=round(stall, 2),
        reconnects=sum(len(c.connects) - 1 for c in conns),
        not_recovered=sum(c.connects[1:].count(False) for c in conns),
        presence_wrong=presence_wrong,
    )
    await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
    await report(asdict(outcome))
    return outcome
