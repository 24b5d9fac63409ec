"""The services' NATS client (chat_common.natsclient) on a real nats-server: what two
consecutive loop turns queue leaves in one write, and nothing is lost or reordered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.msg import Msg

from chat_common.natsclient import CoalescingClient
from chat_devstack.servers import NatsServer

pytestmark = pytest.mark.integration


@pytest.fixture
async def nats_url(tmp_path: Path) -> AsyncIterator[str]:
    server = NatsServer(tmp_path / "nats", auth=False)
    await server.start()
    try:
        yield server.url
    finally:
        await server.stop()


async def _client(url: str) -> CoalescingClient:
    nc = CoalescingClient()
    await nc.connect(servers=[url], allow_reconnect=False)
    return nc


def _count_writes(nc: CoalescingClient) -> list[int]:
    """The number of commands in each write to the socket, from now on."""
    writes: list[int] = []
    transport: Any = nc._transport
    original = transport.writelines

    def writelines(payload: list[bytes]) -> None:
        writes.append(len(payload))
        original(payload)

    transport.writelines = writelines
    return writes


async def test_two_turns_of_publishes_leave_in_one_write_in_order(nats_url: str) -> None:
    publisher, subscriber = await _client(nats_url), await _client(nats_url)
    try:
        got: list[bytes] = []
        done = asyncio.Event()

        async def on_message(msg: Msg) -> None:
            got.append(msg.data)
            if len(got) == 200:
                done.set()

        await subscriber.subscribe("coalesce.test", cb=on_message)
        await subscriber.flush()
        writes = _count_writes(publisher)
        for turn in range(100):
            await publisher.publish("coalesce.test", f"{2 * turn}".encode())
            await asyncio.sleep(0)  # the next loop turn
            await publisher.publish("coalesce.test", f"{2 * turn + 1}".encode())
            await done.wait() if turn == 99 else await asyncio.sleep(0)
        assert got == [f"{n}".encode() for n in range(200)]
        assert sum(writes) == 200
        assert len(writes) <= 100, f"{len(writes)} writes for 200 publishes"
    finally:
        await publisher.close()
        await subscriber.close()


async def test_requests_flush_and_replies_work_as_before(nats_url: str) -> None:
    server, client = await _client(nats_url), await _client(nats_url)
    try:

        async def echo(msg: Msg) -> None:
            await msg.respond(msg.data.upper())

        await server.subscribe("coalesce.echo", cb=echo)
        await server.flush()
        replies = await asyncio.gather(
            *(client.request("coalesce.echo", f"m{i}".encode(), timeout=5) for i in range(50))
        )
        assert [r.data for r in replies] == [f"M{i}".encode() for i in range(50)]
        await client.flush(timeout=5)  # a forced flush is answered (PING/PONG)
    finally:
        await server.close()
        await client.close()
