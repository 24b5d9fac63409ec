"""Sessions survive gateway deaths and restarts: resume on any gateway, nothing missed."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from tests.conftest import MakeStack
from tests.support.clients import NativeClient, SioClient, unique_room
from tests.support.traffic import Ledger, Sender, check_deliveries

pytestmark = pytest.mark.integration

RESUME_ENV = {"GATEWAY_SESSION_HEARTBEAT_S": "0.5"}


def _presence_ok(client: SioClient | NativeClient, room: str, emails: set[str]) -> None:
    """No user_left at all, and each user's user_joined seen at most once."""
    assert [e for e in client.of("user_left") if e["roomId"] == room] == []
    joined = [e["email"] for e in client.of("user_joined") if e["roomId"] == room]
    assert len(joined) == len(set(joined)) and set(joined) <= emails


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
async def test_hundred_socketio_clients_resume_after_a_gateway_dies(
    make_stack: MakeStack, how: str
) -> None:
    """100 clients over two gateways, 5 rooms, traffic flowing; one gateway is killed (or
    terminated) and restarted: every client that was on it recovers, every member gets
    every acked message exactly once in seq order, and presence never flaps."""
    stack = await make_stack(gateways=2, balancer=True, env=RESUME_ENV)
    url = stack.client_url
    rooms = [unique_room("res") for _ in range(5)]
    clients = [SioClient(reconnection=True) for _ in range(100)]
    await asyncio.gather(*(c.connect(url) for c in clients))
    emails = {r: set() for r in rooms}  # type: dict[str, set[str]]
    for i, client in enumerate(clients):
        room = rooms[i % 5]
        emails[room].add(f"u{i}@example.com")
        assert (await client.call("join", {"email": f"u{i}@example.com", "roomId": room}))["ok"]
    for i, client in enumerate(clients):
        # client i is the (i // 5 + 1)-th to join its room: it sees itself and every later joiner
        later_joiners = 20 - i // 5
        room = rooms[i % 5]
        await client.wait_for(
            lambda ev, r=room, n=later_joiners: (
                len({d["email"] for k, d in ev if k == "user_joined" and d["roomId"] == r}) >= n
            )
        )

    victim = stack.of_kind("gateway")[0]
    ledger = Ledger()
    senders = [
        Sender(c, rooms[i % 5], ledger, name=f"s{i}", count=8, pause_s=0.05)
        for i, c in enumerate(clients[:40])
    ]
    traffic = asyncio.gather(*(s.run() for s in senders))
    await asyncio.sleep(0.3)  # let traffic flow before the fault
    if how == "SIGKILL":
        await victim.kill()
    else:
        assert victim.pid is not None
        os.kill(victim.pid, signal.SIGTERM)
        assert await victim.wait() == 0
    await victim.start()
    await victim.wait_ready(timeout=30)
    await asyncio.wait_for(traffic, 120)

    for i, client in enumerate(clients):
        room = rooms[i % 5]
        await client.wait_messages(room, ledger.max_seq(room), timeout=30)
    moved = [c for c in clients if len(c.connects) > 1]
    assert 30 <= len(moved) <= 70, "the balancer spread clients over both gateways"
    for client in clients:
        assert client.connects[0] is False
        assert all(client.connects[1:]), "every reconnect recovered the session"
    for i, client in enumerate(clients):
        room = rooms[i % 5]
        check_deliveries(client, room, ledger)
        _presence_ok(client, room, emails[room])
    assert ledger.total == 40 * 8
    await asyncio.gather(*(c.close() for c in clients))


async def test_native_client_resumes_and_gets_what_it_missed(make_stack: MakeStack) -> None:
    """A dropped native client resumes with sessionId/resumeToken/lastSeq and receives the
    missed messages once, in order; the other member sees no presence change."""
    stack = await make_stack(env=RESUME_ENV)
    room = unique_room()
    url = stack.client_url
    stayer = await SioClient().connect(url)
    roamer = await NativeClient().connect(url)
    try:
        await stayer.call("join", {"email": "stay@example.com", "roomId": room})
        joined = await roamer.call("join", {"email": "roam@example.com", "roomId": room})
        for i in range(3):
            await stayer.call("send_message", {"roomId": room, "text": f"before {i}"})
        seen = await roamer.wait_messages(room, 3)
        assert roamer.ws is not None and roamer.ws.transport is not None
        roamer.ws.transport.abort()  # a dropped connection, no close frame
        await roamer.closed.wait()
        for i in range(4):
            await stayer.call("send_message", {"roomId": room, "text": f"missed {i}"})
        back = await NativeClient().connect(url)
        try:
            reply = await back.call(
                "resume",
                {
                    "sessionId": joined["sessionId"],
                    "resumeToken": joined["resumeToken"],
                    "lastSeq": {room: seen[-1]["seq"]},
                },
            )
            assert reply["ok"] is True and reply["recovered"] is True
            assert reply["rooms"] == [room] and reply["email"] == "roam@example.com"
            assert reply["sessionId"] == joined["sessionId"]
            got = await back.wait_messages(room, 4)
            assert [m["text"] for m in got] == [f"missed {i}" for i in range(4)]
            live = await stayer.call("send_message", {"roomId": room, "text": "live"})
            got = await back.wait_messages(room, 5)
            assert got[-1] == live["message"]
            assert [m["seq"] for m in got] == list(range(4, 9))
            again = await back.call("send_message", {"roomId": room, "text": "I am back"})
            assert again["ok"] is True and again["message"]["email"] == "roam@example.com"
            await stayer.wait_messages(room, 9)
            # Checked before the goodbye below, whose user_left is due.
            _presence_ok(stayer, room, {"stay@example.com", "roam@example.com"})
        finally:
            await back.close()
    finally:
        await stayer.close()


async def test_wrong_token_or_unknown_session_is_not_recovered(make_stack: MakeStack) -> None:
    """A resume with a wrong token or an unknown session is answered recovered: false."""
    stack = await make_stack()
    room = unique_room()
    owner = await NativeClient().connect(stack.client_url)
    thief = await NativeClient().connect(stack.client_url)
    try:
        joined = await owner.call("join", {"email": "owner@example.com", "roomId": room})
        stolen = await thief.call(
            "resume", {"sessionId": joined["sessionId"], "resumeToken": "x" * 43}
        )
        assert stolen["ok"] is True and stolen["recovered"] is False
        assert stolen["sessionId"] != joined["sessionId"]
        reply = await thief.call("send_message", {"roomId": room, "text": "sneaky"})
        assert reply["error"]["code"] == "NOT_IN_ROOM"
        unknown = await NativeClient().connect(stack.client_url)
        try:
            nope = await unknown.call("resume", {"sessionId": "0" * 32, "resumeToken": "y" * 43})
            assert nope["recovered"] is False
        finally:
            await unknown.close()
    finally:
        await owner.close()
        await thief.close()


async def test_offline_longer_than_the_window_is_not_recovered(make_stack: MakeStack) -> None:
    """Past the resume window the session is reaped (user_left once) and a resume says
    not recovered; the client rejoins and pages history."""
    stack = await make_stack(
        env={
            "SESSION_RESUME_WINDOW_S": "1",
            "SESSION_HEARTBEAT_TTL_S": "1",
            "SESSION_REAP_INTERVAL_S": "0.2",
        }
    )
    room = unique_room()
    stayer = await SioClient().connect(stack.client_url)
    leaver = SioClient(reconnection=False)
    await leaver.connect(stack.client_url)
    try:
        await stayer.call("join", {"email": "stay@example.com", "roomId": room})
        await leaver.call("join", {"email": "gone@example.com", "roomId": room})
        pid = leaver.sio.pid
        assert pid is not None
        await leaver.sio.eio.disconnect(abort=True)  # drop without saying goodbye
        await stayer.call("send_message", {"roomId": room, "text": "while away"})
        gone = {
            "roomId": room,
            "email": "gone@example.com",
            "count": 1,
            "users": ["stay@example.com"],
        }
        await stayer.wait_for(lambda ev: ("user_left", gone) in ev, timeout=15)

        late = SioClient()
        late.sio.pid = pid
        await late.connect(stack.client_url)
        try:
            assert late.connects == [False]
            reply = await late.call("send_message", {"roomId": room, "text": "x"})
            assert reply["error"]["code"] == "NOT_IN_ROOM"
            rejoined = await late.call("join", {"email": "gone@example.com", "roomId": room})
            assert [m["text"] for m in rejoined["history"]] == ["while away"]
            page = await late.call("get_history", {"roomId": room, "beforeSeq": 2})
            assert [m["text"] for m in page["messages"]] == ["while away"]
        finally:
            await late.close()
        assert stayer.of("user_left") == [gone]
    finally:
        await stayer.close()


async def test_redis_restarted_empty_during_traffic_rebuilds_sessions(
    make_stack: MakeStack,
) -> None:
    """Redis killed and restarted empty mid-traffic: gateways re-register their sessions,
    presence is complete again without any announcement, and resumes still work."""
    stack = await make_stack(gateways=2, balancer=True, own_redis=True, env=RESUME_ENV)
    redis = stack.test_redis  # type: ignore[attr-defined]
    room = unique_room()
    clients = [SioClient(reconnection=True) for _ in range(6)]
    await asyncio.gather(*(c.connect(stack.client_url) for c in clients))
    for i, client in enumerate(clients):
        await client.call("join", {"email": f"r{i}@example.com", "roomId": room})
    ledger = Ledger()
    senders = [
        Sender(c, room, ledger, name=f"w{i}", count=15, pause_s=0.05) for i, c in enumerate(clients)
    ]
    traffic = asyncio.gather(*(s.run() for s in senders))
    await clients[0].wait_messages(room, 10)
    await redis.kill()
    (redis.home / "appendonly.aof").unlink()
    await redis.start()
    await asyncio.wait_for(traffic, 60)

    probe = await SioClient().connect(stack.client_url)
    try:
        everyone = {f"r{i}@example.com" for i in range(6)} | {"probe@example.com"}

        async def rebuilt() -> None:
            while True:
                joined = await probe.call("join", {"email": "probe@example.com", "roomId": room})
                if set(joined["users"]) == everyone:
                    return
                await asyncio.sleep(0.2)

        await asyncio.wait_for(rebuilt(), 15)
    finally:
        await probe.close()

    victim = stack.of_kind("gateway")[0]
    await victim.kill()
    await victim.start()
    await victim.wait_ready(timeout=30)
    await asyncio.wait_for(
        Sender(clients[0], room, ledger, name="after", count=3, pause_s=0).run(), 30
    )
    for client in clients:
        await client.wait_messages(room, ledger.max_seq(room), timeout=30)
        check_deliveries(client, room, ledger)
        assert all(client.connects[1:])
        assert [e for e in client.of("user_left") if e["email"] != "probe@example.com"] == []
    await asyncio.gather(*(c.close() for c in clients))


async def test_resume_while_the_old_connection_is_still_open_takes_it_over(
    make_stack: MakeStack,
) -> None:
    """Resuming a session whose old connection is still open (same gateway) closes the old
    one with 4009; the session survives it and the new connection gets everything."""
    stack = await make_stack(env=RESUME_ENV)
    room = unique_room()
    url = stack.client_url
    other = await SioClient().connect(url)
    old = await NativeClient().connect(url)
    try:
        await other.call("join", {"email": "other@example.com", "roomId": room})
        joined = await old.call("join", {"email": "twin@example.com", "roomId": room})
        await other.call("send_message", {"roomId": room, "text": "one"})
        await old.wait_messages(room, 1)
        new = await NativeClient().connect(url)
        try:
            reply = await new.call(
                "resume",
                {
                    "sessionId": joined["sessionId"],
                    "resumeToken": joined["resumeToken"],
                    "lastSeq": {room: 1},
                },
            )
            assert reply["recovered"] is True
            await asyncio.wait_for(old.closed.wait(), 10)
            assert old.close_code == 4009
            sent = await other.call("send_message", {"roomId": room, "text": "two"})
            got = await new.wait_messages(room, 1)
            assert got == [sent["message"]]
            mine = await new.call("send_message", {"roomId": room, "text": "still me"})
            assert mine["ok"] is True
            await other.wait_messages(room, 3)
            _presence_ok(other, room, {"other@example.com", "twin@example.com"})
        finally:
            await new.close()
    finally:
        await other.close()
