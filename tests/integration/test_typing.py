"""Typing indicators across two gateway processes, on real NATS, Redis and Postgres, with
both protocols (docs/protocol.md 4.15)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.conftest import MakeStack
from tests.support.clients import NativeClient, SioClient, unique_room
from tests.support.http import metric
from tests.support.rawws import native_join

pytestmark = pytest.mark.integration

TTL_MS = 3000
CLEARED_WITHIN_S = TTL_MS / 1000 / 2
"""A clear that is not the receivers' expiry comes well before it."""
ENV = {"GATEWAY_TYPING_TTL_MS": str(TTL_MS), "GATEWAY_TYPING_INTERVAL_MS": "100"}
Client = SioClient | NativeClient


def _typing(client: Client, room: str) -> list[dict[str, Any]]:
    return [d for d in client.of("typing") if d["roomId"] == room]


async def _shows(
    client: Client, room: str, users: list[str], *, within: float = CLEARED_WITHIN_S
) -> None:
    """Wait until the last typing frame of ``room`` names ``users``, at most ``within``."""
    want = {"roomId": room, "users": users, "count": len(users)}
    await client.wait_for(lambda _ev: (_typing(client, room) or [None])[-1] == want, within)


async def test_typing_across_two_gateways_is_shown_and_cleared_every_way(
    make_stack: MakeStack,
) -> None:
    """A typist on one gateway is shown to members on the other (Socket.IO and native) and
    to no one else, and cleared when they stop, send, leave or disconnect (well before the
    expiry), or vanish without a FIN (then by the receivers' expiry, GATEWAY_TYPING_TTL_MS
    after the last signal)."""
    stack = await make_stack(gateways=2, env=ENV)
    url_a, url_b = stack.gateway_urls
    room, other_room = unique_room(), unique_room()
    ann = await NativeClient().connect(url_a)
    bob = await SioClient().connect(url_b)
    cid = await NativeClient().connect(url_b)
    eve = await SioClient().connect(url_b)
    clients: list[Client] = [ann, bob, cid, eve]
    try:
        for client, email in ((ann, "ann@x.io"), (bob, "bob@x.io"), (cid, "cid@x.io")):
            assert (await client.call("join", {"email": email, "roomId": room}))["ok"]
        assert (await eve.call("join", {"email": "eve@x.io", "roomId": other_room}))["ok"]

        async def types() -> None:
            assert await ann.call("typing", {"roomId": room, "typing": True}) == {"ok": True}
            await _shows(bob, room, ["ann@x.io"])
            await _shows(cid, room, ["ann@x.io"])

        await types()  # stop
        assert await ann.call("typing", {"roomId": room, "typing": False}) == {"ok": True}
        await _shows(bob, room, [])
        await _shows(cid, room, [])

        await types()  # send
        assert (await ann.call("send_message", {"roomId": room, "text": "hi"}))["ok"]
        await _shows(bob, room, [])
        await _shows(cid, room, [])

        await types()  # leave
        assert await ann.call("leave", {"roomId": room}) == {"ok": True}
        await _shows(bob, room, [])

        assert (await ann.call("join", {"email": "ann@x.io", "roomId": room}))["ok"]
        await types()  # disconnect
        await ann.close()
        await _shows(bob, room, [])
        await _shows(cid, room, [])

        # Two typists at once: each other member sees both, each typist only the other.
        assert await bob.call("typing", {"roomId": room, "typing": True}) == {"ok": True}
        assert await cid.call("typing", {"roomId": room, "typing": True}) == {"ok": True}
        await _shows(bob, room, ["cid@x.io"])
        await _shows(cid, room, ["bob@x.io"])
        assert all("bob@x.io" not in d["users"] for d in _typing(bob, room))
        for client in (bob, cid):
            await client.call("typing", {"roomId": room, "typing": False})

        # Vanish: a raw client on the first gateway types once and never reads or writes again.
        ghost = await native_join(url_a, "ghost@x.io", room)
        signal = {"type": "typing", "data": {"roomId": room, "typing": True}}
        ghost.send_text(json.dumps(signal))
        await _shows(bob, room, ["ghost@x.io"])
        shown_at = time.monotonic()
        ghost.go_silent()
        await _shows(bob, room, [], within=TTL_MS / 1000 + 2)
        cleared_after = time.monotonic() - shown_at
        ghost.abort()
        assert TTL_MS / 1000 * 0.8 <= cleared_after <= TTL_MS / 1000 + 1.0, cleared_after

        assert _typing(eve, room) == [] and eve.of("typing") == []
    finally:
        for client in clients:
            await client.close()


async def test_hostile_typing_is_refused_clearly_and_breaks_nothing(
    make_stack: MakeStack,
) -> None:
    """Wrong types, an unknown room and a flood get INVALID_ARGUMENT, NOT_IN_ROOM and
    RATE_LIMITED (with retryAfterMs) on both protocols; the flood publishes at most the
    user's burst, the other gateway's member sees one typist, and chat goes on."""
    stack = await make_stack(gateways=2, env=ENV)
    url_a, url_b = stack.gateway_urls
    room = unique_room()
    sio = await SioClient().connect(url_a)
    native = await NativeClient().connect(url_a)
    watcher = await NativeClient().connect(url_b)
    clients: list[Client] = [sio, native, watcher]
    try:
        assert (await sio.call("join", {"email": "sio@x.io", "roomId": room}))["ok"]
        assert (await native.call("join", {"email": "nat@x.io", "roomId": room}))["ok"]
        assert (await watcher.call("join", {"email": "watch@x.io", "roomId": room}))["ok"]
        for client in (sio, native):
            for bad in (
                {"roomId": room},
                {"roomId": room, "typing": "true"},
                {"roomId": room, "typing": 1},
                {"roomId": ["x"], "typing": True},
                {"roomId": "bad room!", "typing": True},
                [room, True],
            ):
                reply = await client.call("typing", bad)
                assert reply["error"]["code"] == "INVALID_ARGUMENT", (bad, reply)
            reply = await client.call("typing", {"roomId": unique_room(), "typing": True})
            assert reply["error"]["code"] == "NOT_IN_ROOM"

        replies = [await native.call("typing", {"roomId": room, "typing": True}) for _ in range(30)]
        limited = [r for r in replies if not r.get("ok")]
        assert len(limited) >= 30 - 8, replies  # the burst (6) and what refilled meanwhile
        assert all(r["error"]["code"] == "RATE_LIMITED" for r in limited)
        assert all(r["error"]["retryAfterMs"] > 0 for r in limited)
        await _shows(watcher, room, ["nat@x.io"])

        gateway = stack.of_kind("gateway")[0]
        metrics = f"http://127.0.0.1:{gateway.http_port}/metrics"
        published = await metric(metrics, "chat_gateway_typing_events_total", outcome="published")
        assert published <= 8, published
        assert (await sio.call("send_message", {"roomId": room, "text": "still fine"}))["ok"]
        await watcher.wait_messages(room, 1)
    finally:
        for client in clients:
            await client.close()
