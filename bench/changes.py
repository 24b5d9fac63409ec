"""Benchmark: a busy room shape with edits and reactions mixed into its traffic (issue 27).

    .venv/bin/python bench/changes.py [--seconds 20] [--share 0.1] [--rate 20] [--json FILE]

Starts our system (as bench/fanout.py does), then runs the fan-out shape of bench/fanout.py
``--shape`` (100 native clients in 5 rooms of 20, each sending ``--rate`` times a second:
20 gives 40,000 deliveries/s) alternately (``--rounds`` times each), back to back on the same system:

1. messages only;
2. the same sends, where ``--share`` of them (10%) are changes instead of messages: each
   client cycles through an edit of its last acked message, a reaction to it and taking that
   reaction back (so every change is accepted), all pipelined like its messages.

Every member receives every event (message or change). Reported per run: events and
deliveries per second, delivered %, the end-to-end latency of *messages* (p50, p99) and of
edits (their text carries the send time), CPU per delivery, refusals. The figure the issue
asks for is the second run's message p99 against the first's (within 20%).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvloop
from loadgen import Client, percentile, progress, sent_at, timed_text
from systems import OurSystem, cpu_seconds, raise_fd_limit

CLIENTS, ROOMS = 100, 5
CYCLE = ("edit_message", "react", "unreact")


@dataclass
class _Member:
    message_latencies: list[float] = field(default_factory=list)
    edit_latencies: list[float] = field(default_factory=list)
    received: int = 0
    last_acked: int | None = None
    """The seq of this client's newest acked message (what its changes target)."""
    refused: int = 0


async def run(system: OurSystem, *, rate: float, seconds: float, share: float) -> dict[str, Any]:
    """One run of the shape; ``share`` of each client's sends are changes."""
    tag = f"{int(time.time() * 1000) % 10**8}"
    members: dict[int, _Member] = {}

    def on_message(client: Client, message: dict[str, Any], _offset: str | None) -> None:
        member = members[id(client)]
        member.message_latencies.append(time.time() - sent_at(message["text"]))
        member.received += 1

    def on_data(client: Client, name: str, data: Any) -> None:
        if name != "message_changed":
            return
        member = members[id(client)]
        member.received += 1
        if data.get("kind") == "edit":
            member.edit_latencies.append(time.time() - sent_at(data["text"]))

    def on_ack(client: Client, _ack: int, reply: Any) -> None:
        member = members[id(client)]
        if not (isinstance(reply, dict) and reply.get("ok")):
            member.refused += 1
            return
        message = reply.get("message") or {}
        if "kind" not in message:
            member.last_acked = max(member.last_acked or 0, int(message["seq"]))

    conns = [Client(system.url, "native", email=f"c{i}-{tag}@bench.io", on_message=on_message,
                    on_ack=on_ack, on_data=on_data) for i in range(CLIENTS)]  # fmt: skip
    for c in conns:
        members[id(c)] = _Member()
    rooms = [f"bench-changes-{tag}-{i % ROOMS}" for i in range(CLIENTS)]

    async def connect(i: int) -> None:
        await conns[i].open(None)
        reply = await conns[i].request("join", {"email": conns[i].email, "roomId": rooms[i]})
        if not reply.get("ok"):
            raise RuntimeError(f"join failed: {reply}")

    await asyncio.gather(*(connect(i) for i in range(CLIENTS)))

    every = round(1 / share) if share > 0 else 0
    """Every ``every``-th send of a client is a change (0: none)."""

    async def send(i: int) -> tuple[int, int]:
        client, member, room = conns[i], members[id(conns[i])], rooms[i]
        interval, total = 1.0 / rate, max(1, round(rate * seconds))
        start = time.monotonic() + (i % 100) / 100 * interval
        messages = changes = 0
        reacted: int | None = None
        for n in range(total):
            delay = start + n * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            target = member.last_acked
            if every and n % every == every - 1 and target is not None:
                kind = CYCLE[changes % 3]
                if kind == "edit_message":
                    body: dict[str, Any] = {"seq": target, "text": timed_text()}
                elif kind == "react":
                    reacted = target
                    body = {"seq": target, "emoji": "👍"}
                else:
                    body = {"seq": reacted, "emoji": "👍"}
                await client.emit(kind, {"roomId": room, **body})
                changes += 1
            else:
                await client.emit("send_message", {"roomId": room, "text": timed_text()})
                messages += 1
        return messages, changes

    pids = system.cpu_pids()
    cpu_before = cpu_seconds(list(pids.values()))
    began = time.monotonic()
    sent = await asyncio.gather(*(send(i) for i in range(CLIENTS)))
    events = sum(m + c for m, c in sent)
    expected = events * (CLIENTS // ROOMS)
    deadline = time.monotonic() + 10
    while (  # noqa: ASYNC110 - polls its own counters
        sum(m.received for m in members.values()) < expected and time.monotonic() < deadline
    ):
        await asyncio.sleep(0.05)
    elapsed = time.monotonic() - began
    cpu = cpu_seconds(list(pids.values())) - cpu_before
    await asyncio.gather(*(c.close() for c in conns))
    delivered = sum(m.received for m in members.values())
    messages = [x for m in members.values() for x in m.message_latencies]
    edits = [x for m in members.values() for x in m.edit_latencies]
    return {
        "share": share,
        "messages_sent": sum(m for m, _ in sent),
        "changes_sent": sum(c for _, c in sent),
        "events_per_s": round(events / seconds, 1),
        "deliveries_per_s": round(delivered / seconds, 1),
        "delivered_pct": round(100 * delivered / max(expected, 1), 2),
        "message_p50_ms": round(percentile(messages, 0.5) * 1e3, 1),
        "message_p99_ms": round(percentile(messages, 0.99) * 1e3, 1),
        "edit_p99_ms": round(percentile(edits, 0.99) * 1e3, 1) if edits else None,
        "cpu_us_per_delivery": round(cpu / max(delivered, 1) * 1e6, 1),
        "refused": sum(m.refused for m in members.values()),
        "elapsed_s": round(elapsed, 1),
    }


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rate", type=float, default=20)
    parser.add_argument("--share", type=float, default=0.1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    raise_fd_limit()
    results = []
    async with OurSystem() as system:
        for share in (0.0, args.share) * args.rounds:  # alternated: drift hits both alike
            progress(f"run with {share:.0%} changes")
            results.append(await run(system, rate=args.rate, seconds=args.seconds, share=share))
    print("| run | events/s | deliveries/s | delivered | message p50 | message p99 | "
          "edit p99 | CPU µs/delivery | refused |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['share']:.0%} changes | {r['events_per_s']} | {r['deliveries_per_s']} | "
              f"{r['delivered_pct']}% | {r['message_p50_ms']} ms | {r['message_p99_ms']} ms | "
              f"{r['edit_p99_ms'] or '-'} ms | {r['cpu_us_per_delivery']} | {r['refused']} |")  # fmt: skip
    base = [r["message_p99_ms"] for r in results if r["share"] == 0]
    mixed = [r["message_p99_ms"] for r in results if r["share"] > 0]
    ratio = (sum(mixed) / len(mixed)) / max(sum(base) / len(base), 1e-9)
    print(f"\nmean message p99 with changes / without: {ratio:.2f} (target ≤ 1.20)")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(uvloop.run(main()))
