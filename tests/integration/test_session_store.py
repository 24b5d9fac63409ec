"""The session store's contract (``tests/contracts/session_store.py``) on Redis: as one
server, under Sentinel and as a cluster, with real NATS for the announcements (the test
publishes as the session service and listens as a gateway); and what only Redis shows, a
Sentinel failover under the store. The same contract runs on the in-memory store in
``tests/unit/test_session_store.py``."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client
from redis.asyncio import Redis

from chat_common.schemas import encode
from chat_common.subjects import room_presence
from chat_devstack.ha import RedisSentinelGroup
from chat_session import redisclient
from chat_session.handlers import SessionHandlers
from chat_session.redisstore import RedisSessionStore
from chat_session.repair import PresenceRepair
from chat_session.store import SessionStore, StoreUnavailable
from tests.conftest import Servers
from tests.contracts.session_store import SessionStoreContract
from tests.support.bus import connect_as
from tests.support.clients import unique_room
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


_REDIS_URLS: dict[str, Callable[[pytest.FixtureRequest], str]] = {
    "one server": lambda request: request.getfixturevalue("servers").redis.url,
    "sentinel": lambda request: request.getfixturevalue("redis_sentinel").url,
    "cluster": lambda request: request.getfixturevalue("redis_cluster").url,
}


@pytest.fixture(params=list(_REDIS_URLS))
def store_url(request: pytest.FixtureRequest) -> str:
    """Where the store under test lives: the URL of one Redis, of the primary Sentinel
    names or of a Redis Cluster. Its servers are started from a sync fixture: an async one
    cannot start them while the loop runs."""
    return _REDIS_URLS[request.param](request)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[SessionStore]:
    """A fresh store on Redis under a prefix of its own, through the client the service
    makes (a cluster's scripts refuse keys of different slots)."""
    client = redisclient.connect(store_url, max_connections=16, timeout_s=2)
    try:
        yield RedisSessionStore(client, prefix=f"t{uuid.uuid4().hex[:8]}")
    finally:
        await client.aclose()


class NatsPresenceBus:
    """A presence bus (``tests.contracts.session_store.PresenceBus``) on NATS: publishes
    as the session service; :meth:`hear` is the subscription callback of a gateway."""

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self.seen: list[tuple[str, dict[str, Any]]] = []

    async def publish(self, subject: str, payload: bytes) -> None:
        await self._nc.publish(subject, payload)

    async def hear(self, msg: Any) -> None:
        event = msgspec.json.decode(msg.data)
        self.seen.append((event["event"], event["data"]))

    async def settle(self, room: str) -> None:
        """Barrier: publish a marker after everything else (same connection, same subject,
        so NATS keeps the order) and wait until it has been received."""
        marker = uuid.uuid4().hex
        await self._nc.publish(
            room_presence(room),
            encode({"event": "marker", "data": {"roomId": room, "email": marker}}),
        )
        async with asyncio.timeout(5):
            while not any(e == "marker" and d["email"] == marker for e, d in self.seen):
                await self._nc.flush()
                await asyncio.sleep(0.01)
        self.seen[:] = [(e, d) for e, d in self.seen if e != "marker"]

    async def listening(self) -> None:
        """Wait until the listener hears this connection: right after a subscription, NATS
        may drop another connection's first messages for a moment, so probe until one
        arrives."""
        room = unique_room()
        probe = encode({"event": "marker", "data": {"roomId": room, "email": "probe"}})
        async with asyncio.timeout(5):
            while not self.seen:
                await self._nc.publish(room_presence(room), probe)
                await self._nc.flush()
                await asyncio.sleep(0.01)
        await self.settle(room)  # the probes still in flight arrive before its marker


@pytest.fixture
async def bus(servers: Servers) -> AsyncIterator[NatsPresenceBus]:
    nc = await connect_as(servers.nats.url, servers.nats.seed_files, "session")
    listener = await connect_as(servers.nats.url, servers.nats.seed_files, "gateway")
    bus = NatsPresenceBus(nc)
    await listener.subscribe(room_presence("*"), cb=bus.hear)
    await listener.flush()
    await bus.listening()
    yield bus
    await nc.drain()
    await listener.drain()


class TestRedisSessionStore(SessionStoreContract):
    """The contract on one Redis, on Sentinel's primary and on a 6-node Redis Cluster."""

    async def test_a_join_the_room_lost_is_repaired_on_the_second_sweep(
        self, store: SessionStore, bus: NatsPresenceBus
    ) -> None:
        """The room's side of a join lost (its slot's primary failed over before the write
        reached the replica) while the session's side kept it: the second sweep puts the
        member back and announces user_joined."""
        assert isinstance(store, RedisSessionStore)
        h = SessionHandlers(store, bus.publish, resume_window_s=10, heartbeat_ttl_s=5)
        repair = PresenceRepair(store, h.announce, page=100)
        room = unique_room()
        await h.join(encode({"sessionId": "j1", "gatewayId": "g", "email": "a@example.com",
                             "roomId": room, "tokenHash": "h", "sid": "s", "position": 7,
                             "conn": "c"}))  # fmt: skip
        async with store._r.pipeline(transaction=False) as pipe:  # the lost write
            pipe.srem(store._room(room, "conns:a@example.com"), "j1")
            pipe.zrem(store._room(room, "users"), "a@example.com")
            await pipe.execute()
        assert (await store.members(room, after=None, limit=10)).count == 0
        assert await repair.sweep() == 0
        assert await repair.sweep() == 1
        assert (await store.members(room, after=None, limit=10)).users == ["a@example.com"]
        assert await store.session_memberships() == {(room, "a@example.com", "j1"): 7}
        await bus.settle(room)
        assert [e for e, d in bus.seen if d["roomId"] == room] == ["user_joined", "user_joined"]


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
        # Until Sentinel has promoted the replica it still names the dead primary's
        # address, where any process may listen by now: wait for the promotion first.
        replica = group.nodes[1]
        sentinel = Redis(host=replica.host, port=group.sentinels[0].port, decode_responses=True)

        async def promoted() -> bool:
            address = await sentinel.sentinel_get_master_addr_by_name("chat")
            return isinstance(address, tuple) and address[1] == replica.port

        try:
            await eventually(promoted, timeout=30, every=0.2)
        finally:
            await sentinel.aclose()
        async with asyncio.timeout(30):
            while True:
                try:
                    got = await store.get("s1")
                    break
                except StoreUnavailable:  # the store's own word for a Redis error
                    await asyncio.sleep(0.2)
        assert got is not None and got.email == "a@example.com"
        assert await store.track_user_sessions("a@example.com", add="s2") == 2  # writable
    finally:
        await client.aclose()
        await group.stop()
