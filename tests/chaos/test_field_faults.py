"""Faults the field brings, under load: vanished peers, slow readers, a frozen gateway, floods.

Each scenario runs the usual load (40 Socket.IO clients in 4 rooms through the balancer,
every message retried until acked) and counts lost, duplicated, out-of-order and hung
messages. A healthy probe client on each gateway answers every Engine.IO ping and records
when it arrives: the heartbeat cadence everybody else gets while the fault goes on.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from pathlib import Path

import pytest

from chat_devstack.stack import Stack
from tests.chaos.harness import CHAOS_ENV, Fault, Outcome, fault, run_scenario
from tests.conftest import MakeStack
from tests.support.clients import NativeClient, unique_room
from tests.support.http import metric
from tests.support.rawws import PingProbe, RawWs, frame, native_join, sio_join
from tests.support.traffic import Ledger, Sender
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(600)]

PING_INTERVAL_S = 1.0
FIELD_ENV = {
    **CHAOS_ENV,
    "GATEWAY_PING_INTERVAL_MS": str(int(PING_INTERVAL_S * 1000)),
    "GATEWAY_PING_TIMEOUT_MS": "2000",
}
GAP_SLACK_S = 1.5
"""A healthy client's longest wait between two pings may exceed the interval by this much
(one loop tick on a busy 2-core machine), never by a close timeout."""


async def _gateways_metric(stack: Stack, name: str) -> float:
    total = 0.0
    for gateway in stack.of_kind("gateway"):
        total += await metric(f"http://127.0.0.1:{gateway.http_port}/metrics", name)
    return total


def vanish(count: int, protocol: str) -> Fault:
    """``count`` clients join, then go silent without a FIN; the fault ends when the
    gateways have closed every one of them and aborted the TCP connections."""

    async def inject(stack: Stack) -> float:
        room = unique_room("gone")
        join = sio_join if protocol == "socketio" else native_join
        peers = await asyncio.gather(
            *(join(stack.client_url, f"gone{i}@example.com", room) for i in range(count))
        )
        before = await _gateways_metric(stack, "chat_gateway_close_aborts_total")
        for peer in peers:
            peer.go_silent()

        async def all_aborted() -> bool:
            aborts = await _gateways_metric(stack, "chat_gateway_close_aborts_total")
            return aborts >= before + count

        await eventually(all_aborted, timeout=60, every=0.2)
        for peer in peers:
            peer.abort()
        return time.monotonic()

    return inject


def slow_readers(rooms: list[str], count: int) -> Fault:
    """``count`` members of two of the load's rooms stop reading while a sender fills each
    of those rooms with large messages; the fault ends when every one of them has been cut.

    They connect to the gateways directly: through the balancer, its buffers (and a second
    pair of kernel buffers) would hold a few more MB before the gateway saw a backlog.
    """

    async def fill(stack: Stack, room: str, done: asyncio.Event) -> None:
        busy = await NativeClient().connect(stack.client_url)
        try:
            assert (await busy.call("join", {"email": "busy@example.com", "roomId": room}))["ok"]
            for i in range(3000):  # ~12 MB: more than the kernel buffers of any reader
                if done.is_set():
                    return
                body = {"roomId": room, "text": "b" * 4000, "clientMsgId": f"big-{i}"}
                assert (await busy.call("send_message", body))["ok"]
        finally:
            await busy.close()

    async def inject(stack: Stack) -> float:
        before = await _gateways_metric(stack, "chat_gateway_slow_consumer_cuts_total")
        readers = [
            await sio_join(stack.gateway_urls[i % 2], f"slow{i}@example.com", rooms[i % 2],
                           rcvbuf=4096)
            for i in range(count)
        ]  # fmt: skip
        for reader in readers:
            reader.go_silent()
        done = asyncio.Event()
        filling = [asyncio.ensure_future(fill(stack, room, done)) for room in rooms[:2]]

        async def all_cut() -> bool:
            cuts = await _gateways_metric(stack, "chat_gateway_slow_consumer_cuts_total")
            return cuts >= before + count

        try:
            await eventually(all_cut, timeout=120, every=0.2)
        finally:
            done.set()
            await asyncio.gather(*filling)
            for reader in readers:
                reader.abort()
        return time.monotonic()

    return inject


async def _with_probes(
    stack: Stack, name: str, inject: Fault, *, probe_gateways: list[int], **kwargs: object
) -> tuple[Outcome, float]:
    """Run a scenario with a ping probe on each of ``probe_gateways``; returns the outcome
    and the longest ping gap a probe saw."""
    probes = [
        await PingProbe.start(stack.gateway_urls[i], f"probe{i}@example.com", unique_room("p"))
        for i in probe_gateways
    ]
    try:
        outcome = await run_scenario(stack, name, inject, **kwargs)  # type: ignore[arg-type]
        gap = max(p.max_gap for p in probes)
        assert all(p.closed_code is None for p in probes), [p.closed_code for p in probes]
    finally:
        for probe in probes:
            await probe.stop()
    if report := os.environ.get("CHAOS_REPORT"):
        line = json.dumps({"scenario": name, "max_ping_gap_s": round(gap, 2)})
        await asyncio.to_thread(_append, Path(report), line)
    return outcome, gap


def _append(path: Path, line: str) -> None:
    with path.open("a") as out:
        out.write(line + "\n")


def _assert_clean(outcome: Outcome) -> None:
    assert outcome.messages == 40 * 50
    counts = (outcome.lost, outcome.duplicated, outcome.out_of_order, outcome.hung)
    assert counts == (0, 0, 0, 0), outcome
    assert outcome.not_recovered == 0, outcome


@pytest.mark.parametrize(
    "count,protocol", [(50, "socketio"), (20, "native")], ids=["50-socketio", "20-native"]
)
async def test_vanished_clients_cost_nobody_anything(
    make_stack: MakeStack, count: int, protocol: str
) -> None:
    """Many clients vanish at once mid-load: nothing is lost, no healthy client is
    disconnected, and every gateway keeps its heartbeat cadence."""
    stack = await make_stack(gateways=2, balancer=True, own_postgres=True, env=FIELD_ENV)
    outcome, gap = await _with_probes(
        stack, f"{count} vanished {protocol} clients", vanish(count, protocol),
        probe_gateways=[0, 1],
    )  # fmt: skip
    _assert_clean(outcome)
    assert outcome.reconnects == 0, outcome
    assert gap < PING_INTERVAL_S + GAP_SLACK_S, gap


async def test_slow_readers_are_cut_once_and_the_room_goes_on(make_stack: MakeStack) -> None:
    """Members that stop reading for good while their room is busy are each cut once (4008,
    once they took no byte for GATEWAY_CATCHUP_DEADLINE_S past their soft limit); the
    others in the room get everything, in order, without a reconnect.

    The heartbeat keeps its default cadence here: with a 1 s ping interval the silent
    readers would be closed for their missing pongs (4000) before their backlog grows.
    Catch-up pages go as fast as they are taken, so the kernel's buffers fill as quickly as
    they did when a backlog meant a cut.
    """
    env = {**CHAOS_ENV, "GATEWAY_SLOW_CONSUMER_BYTES": "65536", "GATEWAY_CATCHUP_DEADLINE_S": "2",
           "GATEWAY_CATCHUP_INTERVAL_S": "0.01"}  # fmt: skip
    stack = await make_stack(gateways=2, balancer=True, own_postgres=True, env=env)
    rooms = [unique_room("chaos") for _ in range(4)]
    before = await _gateways_metric(stack, "chat_gateway_slow_consumer_cuts_total")
    outcome = await run_scenario(
        stack, "8 slow readers in busy rooms", slow_readers(rooms, 8), room_ids=rooms
    )
    _assert_clean(outcome)
    assert outcome.reconnects == 0, outcome
    cuts = await _gateways_metric(stack, "chat_gateway_slow_consumer_cuts_total")
    assert cuts - before == 8


async def test_a_frozen_gateway_is_left_and_its_sessions_resume(make_stack: MakeStack) -> None:
    """A gateway SIGSTOPped for 10 s under load: its clients notice through the heartbeat,
    reconnect to the other gateway and resume; nothing is lost or doubled, and the other
    gateway's clients keep their ping cadence."""
    stack = await make_stack(gateways=2, balancer=True, own_postgres=True, env=FIELD_ENV)
    outcome, gap = await _with_probes(
        stack, "gateway SIGSTOP 10 s", fault("gateway", "stop", 10), probe_gateways=[1]
    )
    _assert_clean(outcome)
    assert outcome.reconnects > 0, "the frozen gateway's clients moved"
    assert gap < PING_INTERVAL_S + GAP_SLACK_S, gap


CHATTERS, CHAT_ROOMS, CHAT_PAUSE_S = 50, 10, 0.2
PHASE_MESSAGES, ROUNDS = 10, 3
FLOOD_SLACK_S = 0.25


async def _chat(clients: list[NativeClient], rooms: list[str]) -> Ledger:
    ledger = Ledger()
    senders = [
        Sender(c, rooms[i % len(rooms)], ledger, name=f"c{i}-{time.monotonic_ns()}",
               count=PHASE_MESSAGES, pause_s=CHAT_PAUSE_S, timeout_s=15)
        for i, c in enumerate(clients)
    ]  # fmt: skip
    await asyncio.gather(*(s.run() for s in senders))
    return ledger


async def _flooders(url: str) -> list[RawWs]:
    """One connection flooding events on /ws, one flooding Engine.IO pings on Socket.IO."""
    room = unique_room("flood")
    events = await native_join(url, f"flood-{room}@example.com", room)
    event = {"type": "send_message", "data": {"roomId": room, "text": "spam"}}
    events.send_bytes(frame(0x1, json.dumps(event).encode(), masked=False) * 50_000)
    pings = await RawWs.connect(url, "/socket.io/?EIO=4&transport=websocket")
    pings.send_bytes(frame(0x1, b"2", masked=False) * 200_000)
    return [events, pings]


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


async def test_a_flood_while_fifty_chat(make_stack: MakeStack) -> None:
    """Fifty clients chat at the default rate limits, in alternating quiet phases and
    phases during which two connections flood (events on /ws, Engine.IO pings on
    Socket.IO): none of their sends fails and their p99 stays within twice the quiet one
    plus a quarter of a second.

    The phases alternate (three of each) so that a change in the machine's other load
    falls on both sides alike: on a shared 2-core machine one quiet run and one loud run
    can differ by 2x with no flood at all. The absolute slack is there for the same reason
    (a CI machine measured 47 ms quiet against 128 ms loud, the flood's own accepted 20
    sends/s and 50 pongs/s included); the starvation this guards against cost bystanders
    2.6-5.3 s per send before the read budget, ten times the slack.
    """
    env = {
        **FIELD_ENV,
        "GATEWAY_RATE_PER_S": "20",
        "GATEWAY_RATE_BURST": "40",
        "GATEWAY_READ_RATE_PER_S": "50",
        "GATEWAY_READ_BURST": "100",
    }
    stack = await make_stack(env=env)
    url = stack.client_url
    rooms = [unique_room("chat") for _ in range(CHAT_ROOMS)]
    clients = [await NativeClient().connect(url) for _ in range(CHATTERS)]
    quiet, loud = Ledger(), Ledger()
    flooders: list[RawWs] = []
    try:
        for i, c in enumerate(clients):
            room = rooms[i % CHAT_ROOMS]
            assert (await c.call("join", {"email": f"c{i}@example.com", "roomId": room}))["ok"]
        await _chat(clients, rooms)  # warm-up, not measured: first sends take cold paths
        for _ in range(ROUNDS):
            _absorb(quiet, await _chat(clients, rooms))
            flooders = await _flooders(url)
            _absorb(loud, await _chat(clients, rooms))
            for flooder in flooders:
                flooder.abort()
            flooders = []
    finally:
        for flooder in flooders:
            flooder.abort()
        await asyncio.gather(*(c.close() for c in clients))
    assert (quiet.retries, dict(quiet.errors)) == (0, {}), quiet.errors
    assert (loud.retries, dict(loud.errors)) == (0, {}), loud.errors
    assert len(loud.latencies) == len(quiet.latencies) == ROUNDS * CHATTERS * PHASE_MESSAGES
    p99_quiet, p99_loud = _p99(quiet.latencies), _p99(loud.latencies)
    if report := os.environ.get("CHAOS_REPORT"):
        line = json.dumps({"scenario": "flood while 50 chat", "p99_quiet_ms": round(
            p99_quiet * 1000, 1), "p99_flood_ms": round(p99_loud * 1000, 1)})  # fmt: skip
        await asyncio.to_thread(_append, Path(report), line)
    assert p99_loud <= 2 * p99_quiet + FLOOD_SLACK_S, (p99_quiet, p99_loud)


def _absorb(into: Ledger, phase: Ledger) -> None:
    into.latencies += phase.latencies
    into.retries += phase.retries
    into.errors.update(phase.errors)
