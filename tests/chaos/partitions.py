"""The production topology on test hosts, a load that records everything, and the history
checker's verdict (tests/support/checker.py), for partition scenarios.

Every NATS, Redis and Postgres node and every service instance runs in a network namespace
of its own (:mod:`chat_devstack.hosts`); the clients run in this process, on the "outside"
host, and reach the gateways through the balancer (which, like a Kubernetes Service, sends
new clients to ready gateways). A scenario cuts or degrades links with ``net.plan`` and
``net.apply()``, heals, and asks :meth:`PartitionLoad.verdict`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from chat_devstack.ha import SERVER_LABELS, HaServers
from chat_devstack.hosts import HostNetwork
from chat_devstack.stack import Stack, StackConfig
from tests.chaos.harness import CHAOS_ENV
from tests.conftest import FAST_SETTINGS
from tests.support.checker import History, Stored, Verdict, check
from tests.support.clients import SioClient, unique_room

__all__ = [
    "HOST_LABELS",
    "PartitionLoad",
    "RunningLoad",
    "Topology",
    "figures",
    "loaded",
    "topology",
]

HOST_LABELS = (
    *SERVER_LABELS,
    *(f"{kind}-{i}" for kind in ("history", "session", "gateway") for i in (1, 2)),
)
MARK_EVERY = 25
"""Each client marks its room read up to its last ack every this many messages, so read
watermarks move under the faults too; each mark's ack tells the watermark after it, which
the checker holds to never going back (a mark acknowledged, then lost in a failover)."""
SEND_TIMEOUT_S = 10.0
"""A send unanswered this long counts as an unknown outcome, and is sent again."""


@dataclass
class Topology:
    net: HostNetwork
    stack: Stack

    @property
    def ha(self) -> HaServers:
        assert self.stack.ha is not None
        return self.stack.ha

    def addresses(self, *labels: str) -> list[str]:
        """The addresses of these hosts (``nats`` expands to every NATS node, and so on)."""
        out: list[str] = []
        for label in labels:
            group = [h for h in HOST_LABELS if h.rsplit("-", 1)[0] == label]
            out += self.net.addresses(*(group or [label]))
        return out

    async def heal(self) -> None:
        await self.net.heal()


@contextlib.asynccontextmanager
async def topology(
    data_dir: Path, extra_env: dict[str, str] | None = None
) -> AsyncIterator[Topology]:
    """Test hosts, then the topology on them; torn down in the reverse order."""
    async with HostNetwork() as net:
        hosts = {label: await net.add(label) for label in HOST_LABELS}
        config = StackConfig(
            data_dir=data_dir,
            gateways=2,
            sessions=2,
            histories=2,
            ha=True,
            hosts=hosts,
            balancer=True,
            gateway_port=0,
            extra_env={
                **FAST_SETTINGS,
                **CHAOS_ENV,
                "SESSION_KEY_PREFIX": uuid.uuid4().hex[:8],
                **(extra_env or {}),
            },
        )
        async with Stack(config) as stack:
            yield Topology(net, stack)


class PartitionLoad:
    """``clients`` Socket.IO clients (recovering, reconnecting through the balancer), in
    ``rooms`` rooms, each sending ``per_client`` messages one after the other, each resent
    with its ``clientMsgId`` until acked; everything recorded in :attr:`history`."""

    def __init__(self, url: str, *, clients: int = 24, rooms: int = 4, per_client: int = 60):
        self.url = url
        self.rooms = [unique_room("part") for _ in range(rooms)]
        self.history = History()
        self.per_client = per_client
        self.conns = [SioClient(reconnection=True) for _ in range(clients)]
        self._acked = 0
        self._acked_changed = asyncio.Event()
        self.rejoins = 0
        """Clients whose session was not recovered on a reconnect, so joined again (as an
        application does): they are owed nothing from then on by the checker."""
        self.finished_at = 0.0

    def room_of(self, i: int) -> str:
        return self.rooms[i % len(self.rooms)]

    async def start(self) -> None:
        await asyncio.gather(*(c.connect(self.url) for c in self.conns))
        for i, c in enumerate(self.conns):
            room = self.room_of(i)
            ack = await c.call("join", {"email": f"p{i}@example.com", "roomId": room})
            assert ack["ok"], ack
            self.history.joined(f"p{i}", room, int(ack["lastSeq"]))

    async def run(self, *, give_up_s: float = 240) -> None:
        """Every client's sends; returns when all are acked, or ``give_up_s`` has passed
        for one of them (the rest is then an unacknowledged send)."""
        try:
            await asyncio.gather(*(self._send_all(i, give_up_s) for i in range(len(self.conns))))
        finally:
            self.finished_at = time.monotonic()

    @property
    def acked_count(self) -> int:
        return self._acked

    async def acked(self, count: int) -> None:
        """Wait until ``count`` messages have been acked."""
        while self._acked < count:
            self._acked_changed.clear()
            await self._acked_changed.wait()

    async def _send_all(self, i: int, give_up_s: float) -> None:
        client, room = self.conns[i], self.room_of(i)
        for n in range(self.per_client):
            cmid = f"p{i}-{n}-{uuid.uuid4().hex[:6]}"
            began = time.monotonic()
            self.history.send(f"p{i}", room, cmid, began)
            while time.monotonic() - began < give_up_s:
                try:
                    reply = await client.call(
                        "send_message",
                        {"roomId": room, "text": f"p{i} {n}", "clientMsgId": cmid},
                        timeout=SEND_TIMEOUT_S,
                    )
                except Exception as exc:  # dropped, timed out: the outcome is unknown
                    self.history.error(cmid, type(exc).__name__, time.monotonic())
                    await asyncio.sleep(0.2)
                    continue
                if reply.get("ok"):
                    seq = int(reply["message"]["seq"])
                    self.history.ack(cmid, seq, time.monotonic())
                    self._acked += 1
                    self._acked_changed.set()
                    if n % MARK_EVERY == MARK_EVERY - 1:
                        await self._mark(i, seq)
                    break
                code = str(reply["error"]["code"])
                self.history.error(cmid, code, time.monotonic())
                if code == "NOT_IN_ROOM":  # reconnected without its session: join again
                    await self._rejoin(i)
                await asyncio.sleep(0.2)
            await asyncio.sleep(0.05)

    async def _mark(self, i: int, seq: int) -> None:
        """Mark the room read up to ``seq``; the watermark its ack tells is recorded (a
        mark that fails is not retried: the next one covers it)."""
        room = self.room_of(i)
        with contextlib.suppress(Exception):
            ack = await self.conns[i].call(
                "mark_read", {"roomId": room, "seq": seq}, timeout=SEND_TIMEOUT_S
            )
            if ack.get("ok"):
                self.history.watermark(f"p{i}", room, int(ack["readSeq"]))

    @staticmethod
    async def _reached(client: SioClient, room: str, head: int) -> None:
        """Wait (60 s at most) until ``client`` has been delivered ``room``'s last acked
        message: what a member gets last, live. What is missing then is counted."""

        def there(events: list[tuple[str, Any]]) -> bool:
            return any(
                name == "new_message" and d["roomId"] == room and d["seq"] >= head
                for name, d in events
            )

        with contextlib.suppress(TimeoutError):
            await client.wait_for(there, timeout=60)

    async def _rejoin(self, i: int) -> None:
        room = self.room_of(i)
        with contextlib.suppress(Exception):  # not now: the next send finds out again
            ack = await self.conns[i].call(
                "join", {"email": f"p{i}@example.com", "roomId": room}, timeout=SEND_TIMEOUT_S
            )
            if ack.get("ok"):
                self.rejoins += 1
                self.history.left(f"p{i}", room)
                self.history.joined(f"p{i}", room, int(ack["lastSeq"]))

    async def verdict(self, dsn: str) -> Verdict:
        """Once healed: wait (bounded) for every client to have its room's messages, record
        what each was delivered, read what is stored, and check."""
        heads: dict[str, int] = {}
        for send in self.history.sends.values():
            if send.acked_seq is not None:
                heads[send.room] = max(heads.get(send.room, 0), send.acked_seq)
        await asyncio.gather(
            *(self._reached(c, self.room_of(i), heads.get(self.room_of(i), 0))
              for i, c in enumerate(self.conns))
        )  # fmt: skip
        for i, c in enumerate(self.conns):
            for m in c.of("new_message"):
                if m["roomId"] == self.room_of(i):
                    self.history.delivered(
                        f"p{i}", m["roomId"], int(m["seq"]), str(m["clientMsgId"])
                    )
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch(
                "SELECT room_id, seq, client_msg_id FROM messages WHERE room_id = ANY($1)",
                self.rooms,
            )
        finally:
            await conn.close()
        stored = [Stored(r["room_id"], r["seq"], r["client_msg_id"]) for r in rows]
        return check(self.history, stored, until=self.finished_at)

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.conns), return_exceptions=True)


class RunningLoad(PartitionLoad):
    """A :class:`PartitionLoad` sending (:func:`loaded`): :meth:`finish` once healed."""

    sending: asyncio.Future[None]

    @property
    def total(self) -> int:
        return len(self.conns) * self.per_client

    async def finish(self, dsn: str, timeout: float = 600) -> Verdict:
        """Wait (at most ``timeout``) for every send to settle, then the checker's verdict."""
        await asyncio.wait_for(self.sending, timeout)
        return await self.verdict(dsn)


@contextlib.asynccontextmanager
async def loaded(
    topo: Topology, *, per_client: int = 60, give_up_s: float = 240, warm_up: float = 0.25
) -> AsyncIterator[RunningLoad]:
    """The load started, and ``warm_up`` of its sends acked, before the scenario's body
    (its fault) runs; whatever happens in the body, the sends are stopped, the network
    healed and the clients closed on the way out."""
    load = RunningLoad(topo.stack.client_url, per_client=per_client)
    await load.start()
    load.sending = asyncio.ensure_future(load.run(give_up_s=give_up_s))
    try:
        await asyncio.wait_for(load.acked(int(load.total * warm_up)), 120)
        yield load
    finally:
        load.sending.cancel()
        await topo.heal()
        await load.close()


def figures(name: str, verdict: Verdict, load: PartitionLoad, **extra: Any) -> dict[str, Any]:
    """One line of the report (docs/reliability.md)."""
    reconnects = sum(len(c.connects) - 1 for c in load.conns)
    marks = sum(len(seen) for seen in load.history.watermarks.values())
    return {"scenario": name, **verdict.figures(), "reconnects": reconnects,
            "rejoins": load.rejoins, "watermarks_seen": marks, **extra}  # fmt: skip
