"""Exact unread counts for a user who was away while 10,000 messages arrived, with SQL as the
ground truth: once on a quiet stack, once while every service is SIGKILLed, the Postgres
primary fails over to its standby and Redis is flushed in the middle of the sends.

The scenario (:func:`run_unread_scenario`): user A joins room R and two more rooms, then says
goodbye (no connection left). User B sends exactly 10,000 messages to R from several
connections at once (each message has its own ``clientMsgId`` and is resent until acked, so
a resend can never count twice) and 5 to A's second room. Meanwhile user C, a member of R
on two devices, marks R read again and again, with the newest seq or an older one. A then
connects: ``get_rooms`` and the ``join`` ack say 10,000 unread, ``mark_read`` at head - 17
leaves exactly 17, and each figure equals a count of ``messages`` rows after A's watermark
not sent by A. No ``members`` row of the test's rooms is lost, and C's watermark never went
back on either device and ends at the largest seq C marked.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

import asyncpg
import pytest
from socketio.exceptions import BadNamespaceError

from chat_devstack.stack import Stack
from tests.chaos.ha import ha_config, ha_servers, kill_postgres_primary
from tests.chaos.harness import Fault, fault, kill_every, report
from tests.conftest import MakeStack
from tests.support.clients import DroppedBeforeAck, NotConnected, SioClient, unique_room
from tests.support.traffic import Ledger
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(600)]

MESSAGES = 10_000
"""Messages sent to R while A is away."""
SENDERS = 4
"""Connections of B sending them."""
IN_FLIGHT = 24
"""Sends each of those connections has out at once (the gateway handles 32)."""
BACK = 17
"""A marks R read up to head - BACK."""
CALL_TIMEOUT_S = 15.0
RETRY_PAUSE_S = 0.05
MARK_PAUSE_S = 0.02
"""Between two marks of one of C's devices: about 40 marks a second from each."""
RETRYABLE = {"UNAVAILABLE", "INTERNAL"}
"""Error codes a call is retried on; ``INTERNAL`` is counted, and must not happen."""

UNREAD_SQL = """
SELECT count(*) FROM messages
WHERE room_id = $2
  AND seq > (SELECT read_seq FROM members WHERE user_id = $1 AND room_id = $2)
  AND sender IS DISTINCT FROM $1
"""
MEMBERS_SQL = "SELECT user_id, room_id FROM members WHERE room_id = ANY($1::text[])"
READ_SEQ_SQL = "SELECT read_seq FROM members WHERE user_id = $1 AND room_id = $2"


def _email(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}@example.com"


class Line:
    """One reconnecting Socket.IO connection of a user (recovering its session as
    socket.io-client does). Each :meth:`call` is retried until it is answered ``ok``; when
    the connection came back without its session (a fresh one), it joins its rooms again
    first."""

    def __init__(self, email: str, rooms: list[str]) -> None:
        self.email, self.rooms = email, rooms
        self.client = SioClient(reconnection=True)
        self._joined_at = 0
        """How many CONNECTs the client had when it last joined its rooms."""
        self._rejoining = asyncio.Lock()
        self.retries = 0
        self.hung = 0
        """Calls without any answer within their timeout on a connection that stayed up."""
        self.rejoins = 0
        self.errors: Counter[str] = Counter()
        """Error codes answered (each call retried after)."""

    async def open(self, url: str) -> Line:
        await self.client.connect(url)
        await self._join_rooms()
        return self

    def _fresh(self) -> bool:
        """Whether a CONNECT since the last join did not recover the session."""
        return not all(self.client.connects[self._joined_at :])

    async def _join_rooms(self) -> None:
        connects = len(self.client.connects)
        for room in self.rooms:
            ack = await self.client.call(
                "join", {"email": self.email, "roomId": room}, timeout=CALL_TIMEOUT_S
            )
            if not ack["ok"]:
                raise _Refused(ack)
            self.joined(room, ack)
        self._joined_at = connects

    def joined(self, room: str, ack: dict[str, Any]) -> None:
        """A join of ``room`` was answered ``ack`` (for subclasses)."""

    async def call(self, event: str, data: dict[str, Any]) -> dict[str, Any]:
        while True:
            await eventually(self.client.is_connected, timeout=120)
            was_up = self.client.is_connected()
            try:
                if self._fresh():
                    async with self._rejoining:  # one rejoin for all the calls waiting
                        if self._fresh():
                            self.rejoins += 1
                            await self._join_rooms()
                    continue
                reply: dict[str, Any] = await self.client.call(event, data, timeout=CALL_TIMEOUT_S)
            except (NotConnected, DroppedBeforeAck, BadNamespaceError):  # reconnecting
                self.retries += 1
                continue
            except TimeoutError:
                self.hung += was_up and self.client.is_connected()
                self.retries += 1
                continue
            except _Refused as exc:
                reply = exc.ack
            if reply["ok"]:
                return reply
            code = reply["error"]["code"]
            # A fresh connection that slipped in between the check and the call does not
            # know the user or the room yet.
            if code not in RETRYABLE and not self._fresh():
                raise AssertionError(f"{event} {data} refused: {reply}")
            self.errors[code] += 1
            self.retries += 1
            await asyncio.sleep(RETRY_PAUSE_S)

    async def close(self) -> None:
        await self.client.close()


class _Refused(Exception):
    def __init__(self, ack: dict[str, Any]) -> None:
        super().__init__(ack)
        self.ack = ack


class Flood:
    """Exactly ``total`` messages to ``room`` over ``lines``, ``in_flight`` at once on each;
    every message has its own ``clientMsgId`` and is resent until acked. Message ``i`` is
    sent once ``gate(total, i)`` returns."""

    def __init__(
        self,
        lines: list[Line],
        room: str,
        total: int,
        *,
        in_flight: int,
        gate: Callable[[int, int], Awaitable[None]],
    ) -> None:
        self.lines, self.room, self.total, self.in_flight = lines, room, total, in_flight
        self._gate = gate
        self.ledger = Ledger()
        self._todo = iter(range(total))
        self._tag = uuid.uuid4().hex[:8]

    async def run(self) -> None:
        await asyncio.gather(
            *(self._work(line) for line in self.lines for _ in range(self.in_flight))
        )

    async def _work(self, line: Line) -> None:
        for i in self._todo:  # shared by every worker: each message is sent by one
            await self._gate(self.total, i)
            data = {"roomId": self.room, "text": f"m{i}", "clientMsgId": f"{self._tag}-{i}"}
            reply = await line.call("send_message", data)
            self.ledger.record(reply["message"])  # a resend answered otherwise fails here


class Device(Line):
    """One of C's devices: marks ``room`` read until told to stop, each mark the newest
    acked seq or (one in three) an older one, and checks every watermark it learns
    against what it knew before it asked: a mark's ack and a join ack never below it (nor
    a mark's ack below the seq marked), ``read_state`` events never below the one before."""

    def __init__(self, email: str, room: str, rng: random.Random) -> None:
        super().__init__(email, [room])
        self.room, self.rng = room, rng
        self.acked: list[tuple[int, int]] = []
        """(seq marked, readSeq of its ack) of every mark, in order."""
        self.join_seqs: list[int] = []
        self._before_join = 0
        self.went_back: list[str] = []

    def known(self) -> int:
        """The highest watermark this device has been told of so far."""
        events = [e["readSeq"] for e in self.client.of("read_state") if e["roomId"] == self.room]
        return max([0, *events, *self.join_seqs, *(seen for _, seen in self.acked)])

    async def _join_rooms(self) -> None:
        self._before_join = self.known()
        await super()._join_rooms()

    def joined(self, room: str, ack: dict[str, Any]) -> None:
        if ack["readSeq"] < self._before_join:
            self.went_back.append(f"join ack {ack['readSeq']} after {self._before_join}")
        self.join_seqs.append(ack["readSeq"])

    async def mark_until(self, stop: asyncio.Event, head: Callable[[], int]) -> None:
        while not stop.is_set():
            newest = head()
            seq = newest if self.rng.random() < 2 / 3 else self.rng.randint(0, newest)
            before = self.known()
            ack = await self.call("mark_read", {"roomId": self.room, "seq": seq})
            if ack["readSeq"] < max(seq, before):
                self.went_back.append(f"mark {seq} acked {ack['readSeq']} after {before}")
            self.acked.append((seq, ack["readSeq"]))
            await asyncio.sleep(MARK_PAUSE_S)

    def events_went_back(self) -> list[str]:
        """``read_state`` events of the room whose readSeq is below the previous one's."""
        seqs = [e["readSeq"] for e in self.client.of("read_state") if e["roomId"] == self.room]
        return [f"read_state {b} after {a}" for a, b in itertools.pairwise(seqs) if b < a]


class Faults:
    """Faults injected one after the other while the flood runs, each in the middle of it:
    the ``n``-th of ``k`` once ``(n + 1) / (k + 1)`` of the messages are acked. The flood
    does not run ahead of them: a message more than ``lead`` past a fault's mark is sent
    only once that fault has begun, so each begins with sends in flight and messages left."""

    def __init__(self, steps: list[tuple[str, Fault]] | None = None, *, lead: int = 600) -> None:
        self.steps = steps or []
        self.lead = lead
        self._begun = [asyncio.Event() for _ in self.steps]
        self.injected: list[tuple[str, int, int, float]] = []
        """(fault, messages acked when it began, and when it ended, seconds it took)."""

    def marks(self, total: int) -> list[int]:
        return [total * (n + 1) // (len(self.steps) + 1) for n in range(len(self.steps))]

    async def gate(self, total: int, i: int) -> None:
        """Wait until every fault due before message ``i`` (of ``total``) has begun."""
        for mark, begun in zip(self.marks(total), self._begun, strict=True):
            if i >= mark + self.lead:
                await begun.wait()

    async def run(self, stack: Stack, flood: Flood) -> None:
        marks = self.marks(flood.total)
        for (name, inject), mark, begun in zip(self.steps, marks, self._begun, strict=True):
            await flood.ledger.reached(mark)
            began, acked = time.monotonic(), flood.ledger.total
            begun.set()
            await inject(stack)
            took = round(time.monotonic() - began, 2)
            self.injected.append((name, acked, flood.ledger.total, took))


@dataclass
class Outcome:
    sent: int
    send_seconds: float
    retries: int
    hung: int
    rejoins: int
    errors: dict[str, int]
    reconnects: int
    """CONNECTs after the first, of every connection of B and C."""
    fresh: int
    """Those that did not recover their session."""
    marks: int
    faults: list[tuple[str, int, int, float]]


async def _fetch(dsn: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def _sql_unread(dsn: str, user: str, room: str) -> int:
    rows = await _fetch(dsn, UNREAD_SQL, user, room)
    return int(rows[0]["count"])


async def _members(dsn: str, rooms: list[str]) -> set[tuple[str, str]]:
    return {(r["user_id"], r["room_id"]) for r in await _fetch(dsn, MEMBERS_SQL, rooms)}


async def run_unread_scenario(stack: Stack, faults: Faults) -> Outcome:
    """The scenario of the module docstring on ``stack``, with ``faults`` during the flood;
    asserts every count as it goes."""
    url, dsn = stack.client_url, stack.postgres_dsn
    alice, bob, carol = _email("a"), _email("b"), _email("c")
    room, second, third = unique_room("unread"), unique_room("unread2"), unique_room("unread3")
    rooms = [room, second, third]

    away = SioClient()
    await away.connect(url)
    for r in rooms:
        assert (await away.call("join", {"email": alice, "roomId": r}))["unread"] == 0
    senders = [await Line(bob, [room, second]).open(url) for _ in range(SENDERS)]
    rng = random.Random(uuid.uuid4().int)
    devices = [await Device(carol, room, rng).open(url) for _ in range(2)]
    lines: list[Line] = [*senders, *devices]
    try:
        await away.close()  # a goodbye: A has no connection left
        await senders[0].client.wait_for(
            lambda ev: any(n == "user_left" and d["email"] == alice and d["roomId"] == room
                           for n, d in ev),
            timeout=30,
        )  # fmt: skip
        members = await _members(dsn, rooms)
        assert members == {
            *((alice, r) for r in rooms), (bob, room), (bob, second), (carol, room)
        }  # fmt: skip

        flood = Flood(senders, room, MESSAGES, in_flight=IN_FLIGHT, gate=faults.gate)
        stop_marking = asyncio.Event()
        marking = [
            asyncio.ensure_future(d.mark_until(stop_marking, lambda: flood.ledger.max_seq(room)))
            for d in devices
        ]
        began = time.monotonic()
        sending = asyncio.ensure_future(flood.run())
        chaos = asyncio.ensure_future(faults.run(stack, flood))
        try:
            await asyncio.gather(sending, chaos)
        finally:
            send_seconds = round(time.monotonic() - began, 1)
            stop_marking.set()
            for task in (sending, chaos):
                task.cancel()
            marked = await asyncio.gather(*marking, return_exceptions=True)
        for result in marked:
            if isinstance(result, BaseException):
                raise result
        for i in range(5):
            await senders[0].call("send_message", {"roomId": second, "text": f"s{i}"})

        # Every message once: acks, seqs and rows agree.
        acked = flood.ledger.acked[room]
        assert len(acked) == MESSAGES
        assert sorted(m["seq"] for m in acked.values()) == list(range(1, MESSAGES + 1))
        stored = await _fetch(
            dsn, "SELECT count(*), count(DISTINCT client_msg_id), max(seq) FROM messages"
            " WHERE room_id = $1", room,
        )  # fmt: skip
        assert tuple(stored[0]) == (MESSAGES, MESSAGES, MESSAGES)

        # C's watermark: never back on either device, and the largest seq C marked.
        for device in devices:
            assert device.went_back == [], device.went_back
            assert device.events_went_back() == []
        largest = max(seq for d in devices for seq, _ in d.acked)
        assert [r["read_seq"] for r in await _fetch(dsn, READ_SEQ_SQL, carol, room)] == [largest]
        for device in devices:  # every device hears of the last move
            await device.client.wait_for(lambda _, d=device: d.known() == largest, timeout=30)

        # B and C: their inboxes count exactly what SQL counts (B sent everything: 0).
        for line, user, want in (
            (senders[0], bob, {room: 0, second: 0}),
            (devices[0], carol, {room: MESSAGES - largest}),
        ):
            inbox = await line.call("get_rooms", {"limit": 10, "follow": False})
            assert {r["roomId"]: r["unread"] for r in inbox["rooms"]} == want, (user, inbox)
            for r, count in want.items():
                assert await _sql_unread(dsn, user, r) == count

        # A comes back: exactly MESSAGES unread in R, 5 in the second room, none in the third.
        back = SioClient()
        await back.connect(url)
        try:
            inbox = await back.call("get_rooms", {"email": alice, "limit": 10})
            assert inbox["ok"] and inbox["total"] == 3, inbox
            unread = {r["roomId"]: (r["unread"], r["lastSeq"]) for r in inbox["rooms"]}
            assert unread == {room: (MESSAGES, MESSAGES), second: (5, 5), third: (0, 0)}
            for r in rooms:
                assert await _sql_unread(dsn, alice, r) == unread[r][0]
            joined = await back.call("join", {"email": alice, "roomId": room})
            assert (joined["unread"], joined["readSeq"], joined["lastSeq"]) == (
                MESSAGES, 0, MESSAGES,
            ), {k: v for k, v in joined.items() if k != "history"}  # fmt: skip

            head = joined["lastSeq"]
            marked = await back.call("mark_read", {"roomId": room, "seq": head - BACK})
            assert marked == {
                "ok": True, "roomId": room, "readSeq": head - BACK, "lastSeq": head,
                "unread": BACK,
            }  # fmt: skip
            await back.wait_for(
                lambda ev: any(n == "read_state" and d["roomId"] == room and d["unread"] == BACK
                               for n, d in ev)
            )  # fmt: skip
            inbox = await back.call("get_rooms", {"limit": 10})
            unread = {r["roomId"]: r["unread"] for r in inbox["rooms"]}
            assert unread == {room: BACK, second: 5, third: 0}
            assert await _sql_unread(dsn, alice, room) == BACK
        finally:
            await back.close()

        # Nobody lost a membership.
        assert await _members(dsn, rooms) == members
    finally:
        await asyncio.gather(*(line.close() for line in lines), return_exceptions=True)
    return Outcome(
        sent=flood.ledger.total,
        send_seconds=send_seconds,
        retries=sum(line.retries for line in lines),
        hung=sum(line.hung for line in lines),
        rejoins=sum(line.rejoins for line in lines),
        errors=dict(sum((line.errors for line in lines), Counter())),
        reconnects=sum(len(line.client.connects) - 1 for line in lines),
        fresh=sum(line.client.connects[1:].count(False) for line in lines),
        marks=sum(len(d.acked) for d in devices),
        faults=faults.injected,
    )


async def test_unread_is_exact_after_10000_messages_while_away(make_stack: MakeStack) -> None:
    """A user with no connection while 10,000 messages reach a room of theirs comes back to
    exactly 10,000 unread (inbox and join ack), and to exactly 17 after marking head - 17
    read, as SQL counts them; a user marking from two devices meanwhile never sees their
    watermark go back."""
    stack = await make_stack(gateways=2, balancer=True)
    outcome = await run_unread_scenario(stack, Faults())
    assert outcome.sent == MESSAGES
    assert (outcome.hung, outcome.errors.get("INTERNAL", 0)) == (0, 0), outcome
    await report({"scenario": "unread: 10,000 messages while away, quiet", **asdict(outcome)})


@pytest.fixture
async def ha_stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """The production topology (``chat-stack run --ha``), for this test alone."""
    async with Stack(ha_config(tmp_path_factory.mktemp("ha-unread"))) as stack:
        yield stack


async def flush_redis(stack: Stack) -> float:
    """FLUSHALL on every Redis Cluster primary: every session and all presence are gone
    (the gateways' heartbeats register the live sessions again)."""
    cluster = ha_servers(stack).redis
    for node in await cluster.primaries():
        assert (await cluster.cli(node, "FLUSHALL")).strip() == "OK"
    return time.monotonic()


CHAOS: list[tuple[str, Fault]] = [
    ("gateway-1 SIGKILL + restart (its clients resume on gateway-2)",
     fault("gateway", "kill", 1)),
    ("Redis FLUSHALL (live sessions registered again by heartbeats)", flush_redis),
    ("both histories SIGKILL + restart", kill_every("history", 1)),
    ("Postgres primary SIGKILL, standby promoted, old primary back as standby",
     kill_postgres_primary(1.0, rejoin=True)),
    ("both sessions SIGKILL + restart", kill_every("session", 1)),
    ("both gateways SIGKILL, Redis FLUSHALL while they are down, restart (every client "
     "comes back without its session and joins again)",
     kill_every("gateway", 1, while_down=flush_redis)),
]  # fmt: skip


async def test_unread_is_exact_after_10000_messages_through_chaos(ha_stack: Stack) -> None:
    """The same while every service is SIGKILLed and restarted, the Postgres primary is
    killed and its standby promoted, and Redis is flushed, all during the 10,000 sends:
    every count exact afterwards, no watermark ever moved back, no member lost."""
    faults = Faults(CHAOS)
    outcome = await run_unread_scenario(ha_stack, faults)
    assert [name for name, *_ in outcome.faults] == [name for name, _ in CHAOS]
    assert all(acked < MESSAGES for _, acked, _, _ in outcome.faults), outcome.faults
    assert (outcome.hung, outcome.errors.get("INTERNAL", 0)) == (0, 0), outcome
    # Only the flush while the gateways were down cost sessions: B's 4 connections and
    # C's 2 came back without theirs then (and joined again); any other reconnect resumed.
    assert outcome.fresh == SENDERS + 2 and outcome.reconnects > outcome.fresh, outcome
    await report({"scenario": "unread: 10,000 messages while away, chaos", **asdict(outcome)})
