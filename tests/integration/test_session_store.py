"""The session service's logic on a real Redis (and real NATS for its announcements: the
test publishes as the session service and listens as a gateway)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisError

from chat_common.errors import ChatError, ErrorCode
from chat_common.schemas import encode
from chat_common.subjects import room_presence
from chat_devstack.ha import RedisClusterNodes, RedisSentinelGroup
from chat_session import redisclient
from chat_session.handlers import SessionHandlers, token_hash
from chat_session.store import RedisSessionStore, slot_group
from tests.conftest import Servers
from tests.support.bus import connect_as
from tests.support.clients import unique_room

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


@pytest.fixture(params=["one server", "sentinel", "cluster"])
async def redis(
    request: pytest.FixtureRequest,
    servers: Servers,
    redis_sentinel: RedisSentinelGroup,
    redis_cluster: RedisClusterNodes,
) -> AsyncIterator[Redis | RedisCluster]:
    """The store's client as the service makes it: for one Redis, for the primary Sentinel
    names and for a Redis Cluster (whose scripts refuse keys of different slots)."""
    url = {
        "one server": servers.redis.url,
        "sentinel": redis_sentinel.url,
        "cluster": redis_cluster.url,
    }[request.param]
    client = redisclient.connect(url, max_connections=16, timeout_s=2)
    yield client
    await client.aclose()


@pytest.fixture
async def announcements(
    servers: Servers,
) -> AsyncIterator[tuple[Any, list[tuple[str, dict[str, Any]]]]]:
    nc = await connect_as(servers.nats.url, servers.nats.seed_files, "session")
    listener = await connect_as(servers.nats.url, servers.nats.seed_files, "gateway")
    seen: list[tuple[str, dict[str, Any]]] = []

    async def collect(msg: Any) -> None:
        event = msgspec.json.decode(msg.data)
        seen.append((event["event"], event["data"]))

    await listener.subscribe(room_presence("*"), cb=collect)
    await listener.flush()
    yield nc, seen
    await nc.drain()
    await listener.drain()


def _handlers(redis: Redis | RedisCluster, nc: Any, clock: Clock) -> SessionHandlers:
    store = RedisSessionStore(redis, prefix=f"t{uuid.uuid4().hex[:8]}")
    return SessionHandlers(store, nc.publish, resume_window_s=10, heartbeat_ttl_s=5, clock=clock)


def _join(session_id: str, email: str, room: str, token: str = "tok") -> bytes:
    return encode(
        {"sessionId": session_id, "gatewayId": "g1", "email": email, "roomId": room,
         "tokenHash": token_hash(token), "sid": "s-" + session_id, "position": 0, "conn": "c-" + session_id}
    )  # fmt: skip


async def _settle(nc: Any, seen: list[tuple[str, dict[str, Any]]], room: str) -> None:
    """Barrier: publish a marker after everything else (same connection, same subject, so
    NATS keeps the order) and wait until it has been received."""
    marker = uuid.uuid4().hex
    await nc.publish(
        room_presence(room), encode({"event": "marker", "data": {"roomId": room, "email": marker}})
    )
    async with asyncio.timeout(5):
        while not any(e == "marker" and d["email"] == marker for e, d in seen):
            await nc.flush()
            await asyncio.sleep(0.01)
    seen[:] = [(e, d) for e, d in seen if e != "marker"]


async def test_expired_session_is_reaped_once_by_racing_reapers(
    redis: Redis | RedisCluster, announcements: Any
) -> None:
    """Two reapers racing over one expired session announce its user_left exactly once."""
    nc, seen = announcements
    clock = Clock()
    a = _handlers(redis, nc, clock)
    b = SessionHandlers(a._store, nc.publish, resume_window_s=10, heartbeat_ttl_s=5, clock=clock)
    room = unique_room()
    await a.join(_join("s1", "x@example.com", room))
    await a.detach(encode({"sessionId": "s1", "conn": "c-s1"}))
    clock.now += 9_000
    assert await a.reap_once() == 0
    clock.now += 2_000
    reaped = await asyncio.gather(a.reap_once(), b.reap_once())
    assert sorted(reaped) == [0, 1]
    await _settle(nc, seen, room)
    left = [d for e, d in seen if e == "user_left" and d["roomId"] == room]
    assert left == [{"roomId": room, "email": "x@example.com", "count": 0, "users": []}]


async def test_resume_within_window_keeps_presence_and_after_it_fails(
    redis: Redis | RedisCluster, announcements: Any
) -> None:
    """Resume works inside the window (no presence change) and is refused after expiry."""
    nc, seen = announcements
    clock = Clock()
    h = _handlers(redis, nc, clock)
    room = unique_room()
    await h.join(_join("s2", "y@example.com", room, token="secret"))
    await h.detach(encode({"sessionId": "s2", "conn": "c-s2"}))
    clock.now += 9_000
    resumed = msgspec.json.decode(
        await h.resume(
            encode({"sessionId": "s2", "token": "secret", "gatewayId": "g2", "conn": "c-s2"})
        )
    )
    assert resumed == {"email": "y@example.com", "sid": "s-s2", "rooms": {room: 0}}
    with pytest.raises(ChatError) as wrong:
        await h.resume(
            encode({"sessionId": "s2", "token": "guess", "gatewayId": "g2", "conn": "x"})
        )
    assert wrong.value.code is ErrorCode.NOT_FOUND
    await h.detach(encode({"sessionId": "s2", "conn": "c-s2"}))
    clock.now += 10_001
    assert await h.reap_once() == 1
    with pytest.raises(ChatError) as late:
        await h.resume(
            encode({"sessionId": "s2", "token": "secret", "gatewayId": "g2", "conn": "c-s2"})
        )
    assert late.value.code is ErrorCode.NOT_FOUND
    await _settle(nc, seen, room)
    assert [e for e, d in seen if d["roomId"] == room] == ["user_joined", "user_left"]


async def test_heartbeat_reports_lost_sessions_and_restore_is_silent(
    redis: Redis | RedisCluster, announcements: Any
) -> None:
    """After the store loses a session, heartbeat names it; restore rebuilds presence quietly."""
    nc, seen = announcements
    clock = Clock()
    h = _handlers(redis, nc, clock)
    room = unique_room()
    await h.join(_join("s3", "z@example.com", room))
    await h.join(_join("s4", "w@example.com", room))
    await h._store.forget("s3")
    await h._store.leave("s3", "z@example.com", room, page=100)
    beat = msgspec.json.decode(
        await h.heartbeat(encode({"gatewayId": "g1", "sessionIds": ["s3", "s4"]}))
    )
    assert beat == {"unknown": ["s3"]}
    await _settle(nc, seen, room)
    before = len(seen)
    await h.restore(
        encode({"sessionId": "s3", "gatewayId": "g1", "email": "z@example.com", "tokenHash": token_hash("tok"),
                "sid": "s-s3", "rooms": {room: 7}, "conn": "c-s3"})
    )  # fmt: skip
    joined = msgspec.json.decode(await h.join(_join("s5", "v@example.com", room)))
    assert set(joined["users"]) == {"z@example.com", "w@example.com", "v@example.com"}
    await _settle(nc, seen, room)
    assert [e for e, d in seen[before:] if d["email"] == "z@example.com"] == []
    record = await h._store.get("s3")
    assert record is not None and record.rooms == {room: 7}


async def test_a_small_room_announces_its_list_a_large_one_only_the_change(
    redis: Redis | RedisCluster, announcements: Any
) -> None:
    """Up to presence_list_max users, user_joined/user_left carry the member list; past it,
    only who and the count. The join answer holds the first page and where the next starts."""
    nc, seen = announcements
    store = RedisSessionStore(redis, prefix=f"t{uuid.uuid4().hex[:8]}")
    h = SessionHandlers(store, nc.publish, resume_window_s=10, heartbeat_ttl_s=5,
                        presence_list_max=2, clock=Clock())  # fmt: skip
    room = unique_room()
    answers = [
        msgspec.json.decode(await h.join(_join(f"p{n}", f"u{n}@example.com", room)))
        for n in range(4)
    ]
    assert [(a["users"], a["count"], a["next"]) for a in answers[:2]] == [
        (["u0@example.com"], 1, None),
        (["u0@example.com", "u1@example.com"], 2, None),
    ]
    assert answers[3]["users"] == ["u0@example.com", "u1@example.com"]
    assert answers[3]["count"] == 4 and answers[3]["next"] is not None
    await h.leave(encode({"sessionId": "p3", "roomId": room}))
    await h.leave(encode({"sessionId": "p2", "roomId": room}))
    await _settle(nc, seen, room)
    assert seen == [
        ("user_joined", {"roomId": room, "email": "u0@example.com", "count": 1, "users": ["u0@example.com"]}),
        ("user_joined", {"roomId": room, "email": "u1@example.com", "count": 2,
                         "users": ["u0@example.com", "u1@example.com"]}),
        ("user_joined", {"roomId": room, "email": "u2@example.com", "count": 3}),
        ("user_joined", {"roomId": room, "email": "u3@example.com", "count": 4}),
        ("user_left", {"roomId": room, "email": "u3@example.com", "count": 3}),
        ("user_left", {"roomId": room, "email": "u2@example.com", "count": 2,
                       "users": ["u0@example.com", "u1@example.com"]}),
    ]  # fmt: skip


async def test_members_are_paged_in_join_order_and_a_cursor_survives_leaves(
    redis: Redis | RedisCluster, announcements: Any
) -> None:
    nc, _ = announcements
    h = _handlers(redis, nc, Clock())
    room = unique_room()
    for n in range(7):
        await h.join(_join(f"m{n}", f"u{n}@example.com", room))

    async def page(after: int | None, limit: int) -> dict[str, Any]:
        body = {"roomId": room, "limit": limit} | ({} if after is None else {"after": after})
        return dict(msgspec.json.decode(await h.members(encode(body))))

    first = await page(None, 3)
    assert first["users"] == ["u0@example.com", "u1@example.com", "u2@example.com"]
    assert first["count"] == 7 and first["next"] is not None
    await h.leave(encode({"sessionId": "m2", "roomId": room}))  # the page's last one leaves
    await h.leave(encode({"sessionId": "m3", "roomId": room}))  # and the next page's first
    second = await page(first["next"], 3)
    assert second["users"] == ["u4@example.com", "u5@example.com", "u6@example.com"]
    assert (second["count"], second["next"]) == (5, None)
    assert (await page(None, 10))["users"] == [f"u{n}@example.com" for n in (0, 1, 4, 5, 6)]


async def test_a_users_bucket_never_refills_the_same_time_twice(
    redis: Redis | RedisCluster,
) -> None:
    """Concurrent takes reach Redis with their clocks out of order (each read its time
    before waiting for a connection): a late one with an older time neither refills nor
    moves the bucket's clock back, so the next take refills only the time since the newest."""
    store = RedisSessionStore(redis, prefix=f"t{uuid.uuid4().hex[:8]}")

    async def take(want: int, now: int) -> int:
        granted, _ = await store.take("u@example.com", want=want, rate=10, burst=10, now=now)
        return granted

    assert await take(5, now=1_000) == 5  # 10 -> 5
    assert await take(5, now=2_000) == 5  # +10 (capped at 10) -> 5
    assert await take(5, now=1_500) == 5  # stale: no refill -> 0
    assert await take(10, now=2_500) == 5  # 0.5 s since the newest: +5


async def test_the_store_follows_a_sentinel_failover(tmp_path: Path) -> None:
    """The primary dies: Sentinel promotes the replica and the store, given only the
    Sentinels, carries on there with the sessions it had."""
    group = RedisSentinelGroup(tmp_path)
    await group.start()
    client = redisclient.connect(group.url, max_connections=4, timeout_s=1)
    try:
        store = RedisSessionStore(client, prefix="failover")
        opened = await store.open(
            "s1", email="a@example.com", token_hash="h", sid="x", gateway="g", conn="c",
            expires=10**13,
        )  # fmt: skip
        assert opened == ("a@example.com", 1)
        primary = group.nodes[0]
        assert await primary.command("WAIT", "1", "5000") == b":1"  # the write is on both
        await primary.kill()
        async with asyncio.timeout(30):
            while True:
                try:
                    got = await store.get("s1")
                    break
                except (ConnectionError, OSError, RedisError):
                    await asyncio.sleep(0.2)
        assert got is not None and got.email == "a@example.com"
        assert await store.user_sessions("a@example.com", add="s2") == 2  # writable
    finally:
        await client.aclose()
        await group.stop()


async def test_operator_views_see_every_room_and_session_wherever_they_live(
    redis: Redis | RedisCluster,
) -> None:
    """Rooms and sessions spread over slots (and, on a cluster, over primaries): the rooms
    listing scans every node, the session count sums every slot group's index, a room's
    presence lists each user's sessions, and the reaper's scan finds expired sessions of
    every group."""
    store = RedisSessionStore(redis, prefix=f"t{uuid.uuid4().hex[:8]}")
    rooms = sorted(unique_room("ops") for _ in range(5))
    sessions = [f"ops-{n}" for n in range(40)]
    for n, session_id in enumerate(sessions):
        email = f"o{n % 8}@example.com"
        await store.open(session_id, email=email, token_hash="h", sid=f"x{n}", gateway="g",
                         conn=f"c{n}", expires=1_000 + n)  # fmt: skip
        await store.join(session_id, email, rooms[n % 5], 0, page=10)
    assert await store.count() == 40
    listed, more = await store.rooms(limit=1000)
    assert not more and [r for r in listed if r[0] in rooms] == [(room, 8) for room in rooms]
    users, page = await store.presence(rooms[0], limit=10)
    assert page.count == 8 and len(users) == 8
    assert sorted(s for _, ids in users for s in ids) == sorted(sessions[0::5])
    expired = await store.expired(now=1_000 + 19, limit=1000)
    assert sorted(expired) == sorted(sessions[:20])
    assert len({slot_group(s) for s in expired}) > 1
