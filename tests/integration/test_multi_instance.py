"""Several instances of every service behave as one."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import MakeStack
from tests.support.clients import NativeClient, SioClient, unique_room

pytestmark = pytest.mark.integration


async def test_members_on_two_gateways_share_messages_order_and_presence(
    make_stack: MakeStack,
) -> None:
    """Clients spread over two gateways (and two session/history instances) see one room."""
    stack = await make_stack(gateways=2, sessions=2, histories=2)
    url_a, url_b = stack.gateway_urls
    room = unique_room()
    a = await SioClient().connect(url_a)
    b = await NativeClient().connect(url_b)
    c = await SioClient().connect(url_b)
    clients = (a, b, c)
    try:
        await a.call("join", {"email": "a@example.com", "roomId": room})
        await b.call("join", {"email": "b@example.com", "roomId": room})
        await c.call("join", {"email": "c@example.com", "roomId": room})
        everyone = ["a@example.com", "b@example.com", "c@example.com"]
        await a.wait_for(
            lambda ev: (
                (
                    "user_joined",
                    {"roomId": room, "email": "c@example.com", "count": 3, "users": everyone},
                )
                in ev
            )
        )

        async def chat(client: SioClient | NativeClient, name: str) -> None:
            for i in range(20):
                reply = await client.call(
                    "send_message",
                    {"roomId": room, "text": f"{name}{i}", "clientMsgId": f"{name}-{i}"},
                )
                assert reply["ok"] is True

        await asyncio.gather(chat(a, "a"), chat(b, "b"), chat(c, "c"))
        for client in clients:
            got = await client.wait_messages(room, 60)
            assert [m["seq"] for m in got] == list(range(1, 61))
        streams = [[m["id"] for m in client.of("new_message")] for client in clients]
        assert streams[0] == streams[1] == streams[2]

        await b.close()
        left = {
            "roomId": room,
            "email": "b@example.com",
            "count": 2,
            "users": ["a@example.com", "c@example.com"],
        }
        await a.wait_for(lambda ev: ("user_left", left) in ev)
        await c.wait_for(lambda ev: ("user_left", left) in ev)
    finally:
        for client in clients:
            await client.close()


async def test_a_user_with_two_connections_is_listed_once(gateway_url: str) -> None:
    """Presence is per user: a second connection of the same email announces nothing new."""
    room = unique_room()
    watcher = await SioClient().connect(gateway_url)
    tab1 = await NativeClient().connect(gateway_url)
    tab2 = await SioClient().connect(gateway_url)
    try:
        await watcher.call("join", {"email": "w@example.com", "roomId": room})
        await tab1.call("join", {"email": "u@example.com", "roomId": room})
        second = await tab2.call("join", {"email": "u@example.com", "roomId": room})
        assert second["users"] == ["w@example.com", "u@example.com"]
        await tab1.close()
        await tab2.close()
        gone = {"roomId": room, "email": "u@example.com", "count": 1, "users": ["w@example.com"]}
        await watcher.wait_for(lambda ev: ("user_left", gone) in ev)
        # Events of one room reach a member in publish order, so a user_left for the first
        # tab would have come first; there is exactly one, for the last connection.
        assert watcher.of("user_left") == [gone]
        joined = [e for e in watcher.of("user_joined") if e["email"] == "u@example.com"]
        assert len(joined) == 1
    finally:
        await watcher.close()
