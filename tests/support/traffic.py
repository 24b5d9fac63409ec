"""Chat traffic with bookkeeping: who sent what, what was acked, what each client received.

Senders retry an unacknowledged message with the same ``clientMsgId`` until it is acked
(the contract: a retry is idempotent), so after any fault the checker can demand that
every acked message was received by every member exactly once and in seq order.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tests.support.clients import NativeClient, SioClient

__all__ = ["Ledger", "Sender", "check_deliveries"]

Client = SioClient | NativeClient


@dataclass
class Ledger:
    """Every ack, by room."""

    acked: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    """room -> clientMsgId -> message"""
    retries: int = 0
    hung: int = 0
    """Calls that got no answer at all within their timeout (must stay 0)."""
    lost_replies: int = 0
    """Sends the server had processed (stored) whose reply never reached the client:
    found when a retry after a dropped connection returns a message stored before the
    retry was sent (must stay 0: in-flight work is answered before a connection closes)."""
    errors: Counter[str] = field(default_factory=Counter)

    ack_times: list[float] = field(default_factory=list)
    """Monotonic time of every ack (to measure recovery after a fault)."""
    latencies: list[float] = field(default_factory=list)
    """Seconds from sending to the ack, of every call that was answered ``ok``."""
    _waiters: list[tuple[int, asyncio.Event]] = field(default_factory=list)

    async def reached(self, count: int) -> None:
        """Wait until ``count`` messages have been acked."""
        event = asyncio.Event()
        self._waiters.append((count, event))
        self._wake()
        await event.wait()

    def _wake(self) -> None:
        total = self.total
        for count, event in self._waiters:
            if total >= count:
                event.set()

    def record(self, message: dict[str, Any]) -> None:
        room = self.acked.setdefault(message["roomId"], {})
        previous = room.get(message["clientMsgId"])
        if previous is not None and previous != message:
            raise AssertionError(f"a retry returned a different message: {previous} vs {message}")
        room[message["clientMsgId"]] = message
        self.ack_times.append(time.monotonic())
        self._wake()

    def max_seq(self, room: str) -> int:
        return max((m["seq"] for m in self.acked.get(room, {}).values()), default=0)

    @property
    def total(self) -> int:
        return sum(len(r) for r in self.acked.values())


class Sender:
    """One client sending ``count`` messages to ``room``, retrying each until acked.

    A call that gets no answer within ``timeout_s`` while the client stayed connected is
    counted as *hung* (the system promised an answer: an ack or a clear error).
    """

    def __init__(
        self,
        client: Client,
        room: str,
        ledger: Ledger,
        *,
        name: str,
        count: int,
        pause_s: float,
        timeout_s: float = 10.0,
    ) -> None:
        self.client, self.room, self.ledger = client, room, ledger
        self.name, self.count, self.pause_s = name, count, pause_s
        self.timeout_s = timeout_s

    async def run(self) -> None:
        for i in range(self.count):
            msg_id = f"{self.name}-{i}"
            dropped_at: float | None = None
            while True:
                was_connected = self.client.is_connected()
                sent_at, started = time.time(), time.perf_counter()
                try:
                    reply = await self.client.call(
                        "send_message",
                        {"roomId": self.room, "text": f"{self.name} {i}", "clientMsgId": msg_id},
                        timeout=self.timeout_s,
                    )
                except Exception as exc:  # disconnected or timed out: retry the same id
                    if (
                        "Timeout" in type(exc).__name__
                        and was_connected
                        and self.client.is_connected()
                    ):
                        self.ledger.hung += 1
                    self.ledger.errors[type(exc).__name__] += 1
                    self.ledger.retries += 1
                    await asyncio.sleep(0.1)
                    continue
                if reply.get("ok"):
                    self.ledger.latencies.append(time.perf_counter() - started)
                    message = reply["message"]
                    if dropped_at is not None and _epoch(message["ts"]) < sent_at - 0.001:
                        self.ledger.lost_replies += 1
                    self.ledger.record(message)
                    break
                self.ledger.errors[reply["error"]["code"]] += 1
                self.ledger.retries += 1
                await asyncio.sleep(0.1)
            await asyncio.sleep(self.pause_s)


def _epoch(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def check_deliveries(client: Client, room: str, ledger: Ledger, *, since_seq: int = 0) -> None:
    """The client got every acked message of ``room`` after ``since_seq``, once, in order."""
    got = [m for m in client.of("new_message") if m["roomId"] == room]
    seqs = [m["seq"] for m in got]
    expected = list(range(since_seq + 1, ledger.max_seq(room) + 1))
    assert seqs == expected, (
        f"{room}: got {len(seqs)} (dups={len(seqs) - len(set(seqs))}), want {len(expected)}"
    )
    acked_ids = {m["id"] for m in ledger.acked.get(room, {}).values()}
    assert acked_ids <= {m["id"] for m in got}
