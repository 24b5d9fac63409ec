"""More instances change nothing but capacity: discovery, and a rolling restart under load."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter

import msgspec
import nats
import pytest

from chat_devstack.stack import Stack
from tests.chaos.harness import CHAOS_ENV, run_scenario, stop_one
from tests.conftest import MakeStack
from tests.support.bus import connect_as
from tests.support.clients import NativeClient, unique_room
from tests.support.http import metric

pytestmark = pytest.mark.integration


async def test_srv_discovery_lists_every_instance(make_stack: MakeStack) -> None:
    """$SRV.PING answers once per instance: 2 gateways, 2 session and 2 history services."""
    stack = await make_stack(gateways=2, sessions=2, histories=2)
    nc = await connect_as(stack.nats_url, stack.nats_seed_files, "operator")
    try:
        inbox = nc.new_inbox()
        replies: list[dict[str, object]] = []
        done = asyncio.Event()

        async def collect(msg: nats.aio.msg.Msg) -> None:
            replies.append(msgspec.json.decode(msg.data))
            if len(replies) >= 6:
                done.set()

        await nc.subscribe(inbox, cb=collect)
        await nc.publish("$SRV.PING", b"", reply=inbox)
        await asyncio.wait_for(done.wait(), 10)
    finally:
        await nc.drain()
    assert Counter(r["name"] for r in replies) == {"gateway": 2, "session": 2, "history": 2}
    instances = {r["metadata"]["instance"] for r in replies}  # type: ignore[index]
    assert instances == {f"{k}-{i}" for k in ("gateway", "session", "history") for i in (1, 2)}


async def _rolling_restart(stack: Stack) -> float:
    """SIGTERM each instance in turn, wait for its clean exit, start it, wait until ready."""
    for service in [
        *stack.of_kind("history"),
        *stack.of_kind("session"),
        *stack.of_kind("gateway"),
    ]:
        assert service.pid is not None
        os.kill(service.pid, signal.SIGTERM)
        assert await service.wait() == 0, f"{service.name} did not exit 0"
        await service.start()
        await service.wait_ready(timeout=60)
    return asyncio.get_running_loop().time()


@pytest.mark.parametrize("front", ["balancer", "shared-port"])
async def test_rolling_restart_under_load_loses_nothing(make_stack: MakeStack, front: str) -> None:
    """Every instance of every service restarted one at a time under steady load: lost 0,
    dup 0, nothing out of order or hung, and clients see at most resumes. The gateways sit
    behind a balancer, or share one port (SO_REUSEPORT): there a restarting gateway's
    clients reconnect to the same port and the kernel hands them to the other one."""
    stack = await make_stack(
        gateways=2, sessions=2, histories=2, env=CHAOS_ENV,
        balancer=front == "balancer", shared_port=front == "shared-port",
    )  # fmt: skip
    outcome = await run_scenario(stack, "rolling restart", _rolling_restart, per_client=150)
    assert (outcome.lost, outcome.duplicated, outcome.out_of_order, outcome.hung) == (0, 0, 0, 0), (
        outcome
    )
    assert outcome.not_recovered == 0 and outcome.reconnects > 0, outcome


async def test_gateways_sharing_one_port_serve_one_room(make_stack: MakeStack) -> None:
    """Two gateway processes listen on one port (SO_REUSEPORT, no balancer): the kernel
    spreads 40 connections over both, and a message sent into a room whose members sit on
    both gateways reaches every member once."""
    stack = await make_stack(gateways=2, shared_port=True)
    gateways = stack.of_kind("gateway")
    assert {g.public_url for g in gateways} == {stack.client_url}
    room = unique_room("shared")
    clients = [await NativeClient().connect(stack.client_url) for _ in range(40)]
    try:
        for i, client in enumerate(clients):
            joined = await client.call("join", {"email": f"s{i}@example.com", "roomId": room})
            assert joined["ok"], joined
        held = [
            await metric(f"http://127.0.0.1:{g.http_port}/metrics", "chat_gateway_connections",
                         protocol="native")
            for g in gateways
        ]  # fmt: skip
        assert sum(held) == 40 and min(held) > 0, held
        sent = await clients[0].call("send_message", {"roomId": room, "text": "to all"})
        assert sent["ok"], sent
        for client in clients:
            got = await client.wait_messages(room, 1)
            assert [m["text"] for m in got] == ["to all"]
    finally:
        await asyncio.gather(*(c.close() for c in clients))


@pytest.mark.timeout(300)
@pytest.mark.parametrize("action", ["kill", "term"])
@pytest.mark.parametrize("kind", ["gateway", "session", "history"])
async def test_losing_one_of_two_instances_loses_nothing(
    make_stack: MakeStack, kind: str, action: str
) -> None:
    """With two instances of every service, one gateway, session or history instance
    SIGKILLed (or SIGTERMed) under load and never restarted: the survivors carry on with
    lost 0, dup 0, nothing out of order or hung, and every reconnecting client resumes."""
    stack = await make_stack(gateways=2, sessions=2, histories=2, balancer=True, env=CHAOS_ENV)
    outcome = await run_scenario(
        stack, f"{kind} {action}, one of two", stop_one(kind, action), per_client=30
    )
    assert outcome.messages == 40 * 30
    assert (outcome.lost, outcome.duplicated, outcome.out_of_order, outcome.hung) == (0, 0, 0, 0), (
        outcome
    )
    assert outcome.not_recovered == 0, outcome
    if kind == "gateway":
        assert outcome.reconnects > 0, outcome
