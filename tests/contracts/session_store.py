"""The session store's contract, written once: :class:`SessionStoreContract`, run on every
implementation by a subclass that provides its fixtures (``tests/unit/test_session_store.py``:
in memory; ``tests/integration/test_session_store.py``: on Redis as one server, under
Sentinel and as a cluster).

Most tests drive the service's logic (``SessionHandlers``) over the store and read what it
announced on the rooms' presence subjects through a :class:`PresenceBus` (in memory, or
real NATS where the test publishes as the session service and listens as a gateway); the
rest call the store directly.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import msgspec
import pytest

from chat_common.errors import ChatError, ErrorCode
from chat_common.schemas import encode
from chat_common.subjects import room_presence
from chat_session.handlers import SessionHandlers, token_hash
from chat_session.redisstore import slot_group
from chat_session.repair import PresenceRepair
from chat_session.store import SessionStore
from tests.support.clients import unique_room

__all__ = ["MemoryPresenceBus", "PresenceBus", "SessionStoreContract"]


class PresenceBus(Protocol):
    """Where the handlers under test publish, and what a gateway listening to every room's
    presence subject heard: ``(event, data)`` in the order heard."""

    seen: list[tuple[str, dict[str, Any]]]

    async def publish(self, subject: str, payload: bytes) -> None:
        """Publish as the session service."""
        ...

    async def settle(self, room: str) -> None:
        """Return once everything published so far on ``room``'s presence has been heard."""
        ...


_PRESENCE = room_presence("*").split(".")


class MemoryPresenceBus:
    """A :class:`PresenceBus` in process: a presence event is heard as it is published;
    other subjects (a takeover notice to a gateway) are not listened to, as on NATS."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    async def publish(self, subject: str, payload: bytes) -> None:
        tokens = subject.split(".")
        if len(tokens) == len(_PRESENCE) and all(
            p in ("*", t) for p, t in zip(_PRESENCE, tokens, strict=True)
        ):
            event = msgspec.json.decode(payload)
            self.seen.append((event["event"], event["data"]))

    async def settle(self, room: str) -> None:
        return None  # heard on publish already


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


def _handlers(store: SessionStore, bus: PresenceBus, clock: Clock) -> SessionHandlers:
    return SessionHandlers(store, bus.publish, resume_window_s=10, heartbeat_ttl_s=5, clock=clock)


def _join(
    session_id: str, email: str, room: str, token: str = "tok", *, op: int = 0, conn: str = ""
) -> bytes:
    return encode(
        {"sessionId": session_id, "gatewayId": "g1", "email": email, "roomId": room,
         "tokenHash": token_hash(token), "sid": "s-" + session_id, "position": 0,
         "conn": conn or "c-" + session_id, "op": op}
    )  # fmt: skip


def _leave(session_id: str, room: str, *, op: int, conn: str = "") -> bytes:
    return encode({"sessionId": session_id, "roomId": room, "conn": conn or "c-" + session_id,
                   "op": op})  # fmt: skip


async def _refused(request: Any) -> ErrorCode:
    with pytest.raises(ChatError) as refused:
        await request
    return refused.value.code


async def _open(
    store: SessionStore,
    session_id: str,
    email: str = "a@example.com",
    *,
    token: str = "h",
    expires: int = 10_000,
) -> tuple[str, int]:
    """Open ``session_id`` for ``email`` at gateway ``g`` on connection ``c-<session id>``."""
    return await store.open(
        session_id,
        email=email,
        token_hash=token,
        sid="x-" + session_id,
        gateway="g",
        conn="c-" + session_id,
        expires=expires,
    )


class SessionStoreContract:
    """Every test of the session store's contract. A subclass named ``Test...`` runs them
    and provides two fixtures: ``store``, an empty :class:`SessionStore` of its kind (on a
    shared Redis, under a key prefix of its own), and ``bus``, a :class:`PresenceBus`."""

    async def test_expired_session_is_reaped_once_by_racing_reapers(
        self, store: SessionStore, bus: PresenceBus
    ) -> None:
        """Two reapers racing over one expired session announce its user_left exactly once."""
        clock = Clock()
        a = _handlers(store, bus, clock)
        b = SessionHandlers(
            a._store, bus.publish, resume_window_s=10, heartbeat_ttl_s=5, clock=clock
        )
        room = unique_room()
        await a.join(_join("s1", "x@example.com", room))
        await a.detach(encode({"sessionId": "s1", "conn": "c-s1"}))
        clock.now += 9_000
        assert await a.reap_once() == 0
        clock.now += 2_000
        reaped = await asyncio.gather(a.reap_once(), b.reap_once())
        assert sorted(reaped) == [0, 1]
        await bus.settle(room)
        left = [d for e, d in bus.seen if e == "user_left" and d["roomId"] == room]
        assert left == [{"roomId": room, "email": "x@example.com", "count": 0, "users": []}]

    async def test_resume_within_window_keeps_presence_and_after_it_fails(
        self, store: SessionStore, bus: PresenceBus
    ) -> None:
        """Resume works inside the window (no presence change) and is refused after expiry."""
        clock = Clock()
        h = _handlers(store, bus, clock)
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
        await bus.settle(room)
        assert [e for e, d in bus.seen if d["roomId"] == room] == ["user_joined", "user_left"]

    async def test_a_join_that_arrives_after_the_session_ended_changes_nothing(
        self, store: SessionStore, bus: PresenceBus
    ) -> None:
        """A join held up on its way (a session instance cut off from Redis, or a write TCP
        delivers once a partition heals) arrives after the client said goodbye: it neither
        brings the session back nor the user into the room. Seen in the Redis Cluster
        partition test: the session came back, heartbeated by a late heartbeat, for 150 s."""
        h = _handlers(store, bus, Clock())
        room = unique_room()
        await h.join(_join("e1", "late@example.com", room, op=1))
        await h.leave(_leave("e1", room, op=2))
        await h.disconnect(encode({"sessionId": "e1", "conn": "c-e1"}))
        assert (
            await _refused(h.join(_join("e1", "late@example.com", room, op=1)))
            is ErrorCode.NOT_FOUND
        )
        assert await store.get("e1") is None
        assert (await store.members(room, after=None, limit=10)).count == 0
        assert await store.count() == 0
        restore = encode({"sessionId": "e1", "gatewayId": "g1", "email": "late@example.com",
                          "tokenHash": token_hash("tok"), "sid": "s-e1", "rooms": {room: 0},
                          "conn": "c-e1"})  # fmt: skip
        assert await _refused(h.restore(restore)) is ErrorCode.NOT_FOUND
        assert (await store.members(room, after=None, limit=10)).count == 0
        await bus.settle(room)
        assert [e for e, d in bus.seen if d["roomId"] == room] == ["user_joined", "user_left"]

    async def test_a_connections_join_or_leave_overtaken_by_a_later_one_is_refused(
        self, store: SessionStore, bus: PresenceBus
    ) -> None:
        """Joins and leaves are numbered per connection: one that arrives after a later one
        of the same room was applied changes nothing, so presence ends as the connection's
        last word; a later-numbered one of another room does not stand in its way."""
        h = _handlers(store, bus, Clock())
        room, other = unique_room(), unique_room()
        await h.join(_join("f1", "turn@example.com", room, op=1))
        await h.leave(_leave("f1", room, op=2))
        assert (
            await _refused(h.join(_join("f1", "turn@example.com", room, op=1)))
            is ErrorCode.NOT_FOUND
        )
        assert (await store.members(room, after=None, limit=10)).users == []
        record = await store.get("f1")
        assert record is not None and record.rooms == {}
        await h.join(_join("f1", "turn@example.com", room, op=3))
        assert await _refused(h.leave(_leave("f1", room, op=2))) is ErrorCode.NOT_FOUND
        assert (await store.members(room, after=None, limit=10)).users == ["turn@example.com"]
        assert await store.room_memberships() >= {(room, "turn@example.com", "f1")}
        assert (room, "turn@example.com", "f1") in await store.session_memberships()
        await h.join(_join("f1", "turn@example.com", other, op=9))
        await h.leave(_leave("f1", room, op=4))  # sent before the join of the other room
        assert (await store.members(room, after=None, limit=10)).users == []
        assert (await store.members(other, after=None, limit=10)).users == ["turn@example.com"]

    async def test_a_late_request_of_the_connection_a_session_moved_from_is_refused(
        self, store: SessionStore, bus: PresenceBus
    ) -> None:
        """After a resume on a new connection, the old connection's late join is refused
        (it would move the session back to a dead connection), and the new connection
        numbers its own from 1."""
        h = _handlers(store, bus, Clock())
        room, other = unique_room(), unique_room()
        await h.join(_join("g1", "moved@example.com", room, token="t", op=1))
        await h.detach(encode({"sessionId": "g1", "conn": "c-g1"}))
        stale = _join("g1", "moved@example.com", other, token="t", op=2)
        assert await _refused(h.join(stale)) is ErrorCode.NOT_FOUND  # detached: resume first
        await h.resume(encode({"sessionId": "g1", "token": "t", "gatewayId": "g2", "conn": "new"}))
        assert await _refused(h.join(stale)) is ErrorCode.NOT_FOUND
        await h.join(_join("g1", "moved@example.com", other, token="t", op=1, conn="new"))
        record = await store.get("g1")
        assert record is not None
        assert (record.conn, sorted(record.rooms)) == ("new", sorted([room, other]))

    async def test_the_old_connections_detach_leaves_a_resumed_session_alone(
        self, store: SessionStore, bus: PresenceBus
    ) -> None:
        """A connection drops and its client resumes on a new one before the gateway's
        detach for the old one arrives: the detach changes nothing (the session stays
        attached to the new connection, whose joins and leaves are heard)."""
        h = _handlers(store, bus, Clock())
        room = unique_room()
        await h.join(_join("h1", "back@example.com", room, token="t", op=1, conn="old"))
        await h.resume(encode({"sessionId": "h1", "token": "t", "gatewayId": "g2", "conn": "new"}))
        await h.detach(encode({"sessionId": "h1", "conn": "old"}))
        view = await store.view("h1")
        assert view is not None and (view.state, view.gateway) == ("attached", "g2")
        await h.leave(_leave("h1", room, op=1, conn="new"))
        assert (await store.members(room, after=None, limit=10)).users == []

    async def test_a_session_does_not_expire_while_gateways_cannot_heartbeat(
        self, store: SessionStore, bus: PresenceBus
    ) -> None:
        """While expiry is paused (the bus is down or just back) a session past its expiry
        is neither reaped nor refused a resume; once expiry runs again, it is both."""
        clock = Clock()
        paused = True
        h = SessionHandlers(store, bus.publish, resume_window_s=10, heartbeat_ttl_s=5,
                            clock=clock, may_expire=lambda: not paused)  # fmt: skip
        room = unique_room()
        resume = encode({"sessionId": "s3", "token": "t3", "gatewayId": "g2", "conn": "c-s3"})
        await h.join(_join("s3", "z@example.com", room, token="t3"))
        clock.now += 60_000  # far past attached expiry: no heartbeat got through
        assert await h.reap_once() == 0
        assert msgspec.json.decode(await h.resume(resume))["email"] == "z@example.com"
        await h.detach(encode({"sessionId": "s3", "conn": "c-s3"}))
        clock.now += 60_000
        paused = False
        with pytest.raises(ChatError) as late:
            await h.resume(resume)
        assert late.value.code is ErrorCode.NOT_FOUND
        assert await h.reap_once() == 1

    async def test_both_sides_of_a_membership_are_read_and_agree(
        self, store: SessionStore, bus: PresenceBus
    ) -> None:
        """The sweep's two views: every join is on both sides (with its position on the
        session's), a leave on neither."""
        h = _handlers(store, bus, Clock())
        room, other = unique_room(), unique_room()
        await h.join(_join("m1", "a@example.com", room))
        await h.join(_join("m2", "b@example.com", room))
        await h.join(_join("m2", "b@example.com", other))
        await h.leave(encode({"sessionId": "m2", "roomId": room}))
        want = {(room, "a@example.com", "m1"), (other, "b@example.com", "m2")}
        assert await store.room_memberships() == want
        assert await store.session_memberships() == dict.fromkeys(want, 0)

    async def test_a_membership_whose_session_is_gone_leaves_on_the_second_sweep(
        self, store: SessionStore, bus: PresenceBus
    ) -> None:
        """The session's side lost (as a Redis failover loses a write): the first sweep
        only notes the drift (a join in flight looks the same), the second repairs it and
        announces user_left; another instance's sweep then finds nothing to repair."""
        h = _handlers(store, bus, Clock())
        repair = PresenceRepair(store, h.announce, page=100)
        other = PresenceRepair(store, h.announce, page=100)
        room = unique_room()
        await h.join(_join("d1", "stay@example.com", room))
        await h.join(_join("d2", "gone@example.com", room))
        await store.forget("d2")
        assert (await repair.sweep(), await other.sweep()) == (0, 0)
        assert (await repair.sweep(), await other.sweep()) == (1, 0)
        assert (await store.members(room, after=None, limit=10)).users == ["stay@example.com"]
        assert await repair.sweep() == 0
        await bus.settle(room)
        events = [(e, d["email"]) for e, d in bus.seen if d["roomId"] == room]
        assert events == [("user_joined", "stay@example.com"), ("user_joined", "gone@example.com"),
                          ("user_left", "gone@example.com")]  # fmt: skip

    async def test_heartbeat_reports_lost_sessions_and_restore_is_silent(
        self, store: SessionStore, bus: PresenceBus
    ) -> None:
        """After the store loses a session, heartbeat names it; restore rebuilds presence
        quietly."""
        clock = Clock()
        h = _handlers(store, bus, clock)
        room = unique_room()
        await h.join(_join("s3", "z@example.com", room))
        await h.join(_join("s4", "w@example.com", room))
        await h._store.forget("s3")
        await h._store.leave("s3", "z@example.com", room, page=100)
        beat = msgspec.json.decode(
            await h.heartbeat(encode({"gatewayId": "g1", "sessionIds": ["s3", "s4"]}))
        )
        assert beat == {"unknown": ["s3"]}
        await bus.settle(room)
        before = len(bus.seen)
        await h.restore(
            encode({"sessionId": "s3", "gatewayId": "g1", "email": "z@example.com", "tokenHash": token_hash("tok"),
                    "sid": "s-s3", "rooms": {room: 7}, "conn": "c-s3"})
        )  # fmt: skip
        joined = msgspec.json.decode(await h.join(_join("s5", "v@example.com", room)))
        assert set(joined["users"]) == {"z@example.com", "w@example.com", "v@example.com"}
        await bus.settle(room)
        assert [e for e, d in bus.seen[before:] if d["email"] == "z@example.com"] == []
        record = await h._store.get("s3")
        assert record is not None and record.rooms == {room: 7}

    async def test_a_restore_cut_short_is_asked_for_again_and_done_whole(
        self, store: SessionStore, bus: PresenceBus
    ) -> None:
        """A restore writes the rooms first and the session last: cut short after the rooms
        (Redis still coming back), the session is still unknown to the heartbeat, which asks
        again, and the second restore completes it, announcing nothing. (Session first, a
        cut-short restore left a known session without its rooms, and the drift sweep then
        took the user out of a room the connection was in.)"""
        h = _handlers(store, bus, Clock())
        room = unique_room()
        await store.join("k1", "cut@example.com", room, 3, page=100)  # the rooms, no session
        beat = {"gatewayId": "g1", "sessionIds": ["k1"]}
        assert msgspec.json.decode(await h.heartbeat(encode(beat))) == {"unknown": ["k1"]}
        await h.restore(
            encode({"sessionId": "k1", "gatewayId": "g1", "email": "cut@example.com",
                    "tokenHash": token_hash("tok"), "sid": "s-k1", "rooms": {room: 3},
                    "conn": "c-k1"})
        )  # fmt: skip
        assert msgspec.json.decode(await h.heartbeat(encode(beat))) == {"unknown": []}
        record = await store.get("k1")
        assert record is not None and record.rooms == {room: 3}
        assert await store.room_memberships() >= {(room, "cut@example.com", "k1")}
        await bus.settle(room)
        assert [e for e, d in bus.seen if d["roomId"] == room] == []

    async def test_a_small_room_announces_its_list_a_large_one_only_the_change(
        self, store: SessionStore, bus: PresenceBus
    ) -> None:
        """Up to presence_list_max users, user_joined/user_left carry the member list; past it,
        only who and the count. The join answer holds the first page and where the next starts."""
        h = SessionHandlers(store, bus.publish, resume_window_s=10, heartbeat_ttl_s=5,
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
        await bus.settle(room)
        assert bus.seen == [
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
        self, store: SessionStore, bus: PresenceBus
    ) -> None:
        h = _handlers(store, bus, Clock())
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
        self, store: SessionStore
    ) -> None:
        """Concurrent takes reach Redis with their clocks out of order (each read its time
        before waiting for a connection): a late one with an older time neither refills nor
        moves the bucket's clock back, so the next take refills only the time since the newest."""

        async def take(want: int, now: int) -> int:
            granted, _ = await store.take("u@example.com", want=want, rate=10, burst=10, now=now)
            return granted

        assert await take(5, now=1_000) == 5  # 10 -> 5
        assert await take(5, now=2_000) == 5  # +10 (capped at 10) -> 5
        assert await take(5, now=1_500) == 5  # stale: no refill -> 0
        assert await take(10, now=2_500) == 5  # 0.5 s since the newest: +5

    async def test_operator_views_see_every_room_and_session_wherever_they_live(
        self, store: SessionStore
    ) -> None:
        """Rooms and sessions spread over slots (and, on a cluster, over primaries): the rooms
        listing scans every node, the session count sums every slot group's index, a room's
        presence lists each user's sessions, and the reaper's scan finds expired sessions of
        every group."""
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
        assert len({slot_group(s) for s in expired}) > 1  # they span Redis' slot groups

    # The store's contract, call by call.

    async def test_reattach_accepts_a_live_session_and_refuses_an_expired_one(
        self, store: SessionStore
    ) -> None:
        """Before its expiry a session reattaches (new expiry, new connection); at it, or when
        unknown, reattach refuses and changes nothing."""
        await _open(store, "s1", expires=2_000)
        assert await store.reattach("s1", now=1_999, expires=5_000, gateway="g2", conn="c2")
        assert not await store.reattach("s1", now=5_000, expires=9_000, gateway="g3", conn="c3")
        assert not await store.reattach("ghost", now=0, expires=9_000, gateway="g3", conn="c3")
        view, record = await store.view("s1"), await store.get("s1")
        assert view is not None and (view.gateway, view.state, view.expires) == (
            "g2",
            "attached",
            5_000,
        )
        assert record is not None and record.conn == "c2"
        assert await store.known(["ghost"]) == [False]

    async def test_claim_takes_an_expired_session_exactly_once_and_a_live_one_never(
        self, store: SessionStore
    ) -> None:
        """claim refuses a session before its expiry; from then on exactly one of racing claims
        wins, and the session leaves the expiry index."""
        await _open(store, "s1", expires=2_000)
        assert not await store.claim("s1", now=1_999)
        claims = await asyncio.gather(*(store.claim("s1", now=2_000) for _ in range(3)))
        assert sorted(claims) == [False, False, True]
        assert not await store.claim("s1", now=3_000)
        assert await store.expired(now=3_000, limit=10) == [] and await store.count() == 0

    async def test_heartbeat_extends_only_known_sessions(self, store: SessionStore) -> None:
        """known names the sessions the store holds; heartbeat moves their expiry and leaves
        unknown ones unknown."""
        await _open(store, "s1", expires=2_000)
        assert await store.known(["s1", "ghost"]) == [True, False]
        await store.set_expiry(["s1", "ghost"], expires=7_000)
        view = await store.view("s1")
        assert view is not None and view.expires == 7_000
        assert await store.known(["ghost"]) == [False]
        assert await store.expired(now=10**6, limit=10) == ["s1"] and await store.count() == 1

    async def test_forget_removes_a_session_from_get_view_and_count(
        self, store: SessionStore
    ) -> None:
        """A forgotten session (rooms included) is gone from get, view, known and count; the
        others stay."""
        await _open(store, "s1")
        await _open(store, "s2")
        await store.join("s1", "a@example.com", "r1", 3, page=10)
        await store.forget("s1")
        assert await store.get("s1") is None and await store.view("s1") is None
        assert await store.known(["s1", "s2"]) == [False, True] and await store.count() == 1

    async def test_presence_changes_on_a_users_first_join_and_last_leave_only(
        self, store: SessionStore
    ) -> None:
        """With two sessions of one user in a room, only the first join and the last leave
        change presence; a repeated join or leave of one session changes nothing."""
        email = "a@example.com"
        steps = [
            await store.join("s1", email, "r1", 0, page=10),
            await store.join("s2", email, "r1", 0, page=10),
            await store.join("s1", email, "r1", 0, page=10),
            await store.leave("s1", email, "r1", page=10),
            await store.leave("s1", email, "r1", page=10),
            await store.leave("s2", email, "r1", page=10),
        ]
        assert [(s.changed, s.page.count) for s in steps] == [
            (True, 1), (False, 1), (False, 1), (False, 1), (False, 1), (True, 0),
        ]  # fmt: skip
        assert steps[1].complete == [email] and steps[-1].complete == []

    async def test_a_members_cursor_skips_no_one_when_members_leave_mid_paging(
        self, store: SessionStore
    ) -> None:
        """Users leaving before or at a page's cursor do not shift the pages after it; a user
        who leaves and joins again comes last."""
        for n in range(5):
            await store.join(f"s{n}", f"u{n}@example.com", "r1", 0, page=10)
        first = await store.members("r1", after=None, limit=2)
        assert first.users == ["u0@example.com", "u1@example.com"] and first.count == 5
        await store.leave("s0", "u0@example.com", "r1", page=10)
        await store.leave("s1", "u1@example.com", "r1", page=10)
        await store.join("s0", "u0@example.com", "r1", 0, page=10)
        second = await store.members("r1", after=first.next, limit=2)
        third = await store.members("r1", after=second.next, limit=2)
        assert second.users == ["u2@example.com", "u3@example.com"] and second.count == 4
        assert (third.users, third.next) == (["u4@example.com", "u0@example.com"], None)

    async def test_a_bucket_grants_up_to_its_burst_then_says_when_to_retry_and_refills(
        self, store: SessionStore
    ) -> None:
        """take grants what the bucket holds (at most the burst), then nothing and how long
        until one token; time refills it at the rate, up to the burst."""

        async def take(want: int, now: int) -> tuple[int, int]:
            return await store.take("u@example.com", want=want, rate=2, burst=3, now=now)

        assert await take(2, now=1_000) == (2, 0)
        assert await take(5, now=1_000) == (1, 0)
        assert await take(1, now=1_000) == (0, 500)
        assert await take(1, now=1_250) == (0, 250)  # half a token by now
        assert await take(5, now=2_000) == (2, 0)
        assert await take(5, now=60_000) == (3, 0)

    async def test_open_with_another_email_returns_the_bound_email_and_zero(
        self, store: SessionStore
    ) -> None:
        """A session stays bound to its first email and token: opening it for another user
        returns the bound email and 0 and counts nothing for either user; reopening it for its
        own user counts it once."""
        assert await _open(store, "s1", "a@example.com") == ("a@example.com", 1)
        assert await _open(store, "s1", "b@example.com", token="other") == ("a@example.com", 0)
        assert await _open(store, "s2", "a@example.com") == ("a@example.com", 2)
        assert await _open(store, "s1", "a@example.com") == ("a@example.com", 2)
        record = await store.get("s1")
        assert record is not None and (record.email, record.token_hash) == ("a@example.com", "h")
        assert await store.track_user_sessions("b@example.com") == 0

    async def test_opening_another_users_session_moves_nothing(self, store: SessionStore) -> None:
        """An open for another email leaves the session where it lives (gateway, connection,
        state) and when it expires: a refused join cannot take a session over."""
        await store.open("s1", email="a@example.com", token_hash="h", sid="x", gateway="g1",
                         conn="c1", expires=1_000)  # fmt: skip
        assert await store.detach("s1", conn="c1", expires=1_000)
        await store.open("s1", email="b@example.com", token_hash="t", sid="y", gateway="g2",
                         conn="c2", expires=9_000)  # fmt: skip
        record, view = await store.get("s1"), await store.view("s1")
        assert record is not None and (record.gateway, record.conn) == ("", "")
        assert view is not None and (view.state, view.expires) == ("detached", 1_000)

    async def test_rooms_lists_rooms_with_users_by_id_and_says_when_there_are_more(
        self, store: SessionStore
    ) -> None:
        """rooms lists only rooms with users, by id with their user counts, at most ``limit``
        of them, and whether there are more."""
        for n, room in enumerate(["r3", "r1", "r2", "r0"]):
            await store.join(f"s{n}", f"u{n}@example.com", room, 0, page=10)
        await store.join("s9", "u9@example.com", "r2", 0, page=10)
        await store.leave("s3", "u3@example.com", "r0", page=10)
        assert await store.rooms(limit=10) == ([("r1", 1), ("r2", 2), ("r3", 1)], False)
        assert await store.rooms(limit=2) == ([("r1", 1), ("r2", 2)], True)
