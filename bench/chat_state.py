"""Benchmark: read state across devices and the inbox of a user in many rooms (issue 26).

    .venv/bin/python bench/chat_state.py [--shipped] [--trials 1000] [--rooms 2000]
        [--inbox-trials 500] [--env KEY=VALUE ...] [--json FILE]

Starts our system fresh (NATS, Redis, Postgres, one session and one history service, two
gateways on their own ports; the limits one load generator would hit lifted, as in
bench/systems.py ``OUR_ENV``; ``--env`` adds or overrides settings), then runs the steps
below. ``--shipped``: tracing and logs as deployed (docker-compose.yml: every span
recorded and exported over OTLP/HTTP, here to bench/otlp_sink.py in its own process; logs at
INFO); the default is the quiet bench configuration (tracing off, WARNING logs).

1. **read_state across devices**: one user on two devices, a Socket.IO client on gateway 1
   and a native client on gateway 2, both in one room; another user sends a message, and
   once both devices have it, device 1 marks the room read to the head: the time from that
   ``mark_read`` to device 2 receiving ``read_state {unread: 0}``, ``--trials`` times.
2. **a user in ``--rooms`` rooms** (each with messages from another user): the first page
   of 50 of ``get_rooms`` (time to the ack; every unread checked against the messages sent);
   paging to the end while another client keeps sending to random rooms (every room exactly
   once); then two devices of the user (Socket.IO on gateway 1, native on gateway 2)
   follow the inbox and, ``--inbox-trials`` times, a message goes to the user's least
   recently active room: the time from its send to its ``inbox_update`` on each device.

Prints a Markdown table; ``--json FILE`` writes every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop
from loadgen import Client, latency_stats, progress
from systems import OUR_ENV, SHIPPED_ENV, OtlpSink, raise_fd_limit

from chat_devstack.stack import Stack, StackConfig

ROOM = "bench-state"
USER, OTHER = "reader@example.com", "writer@example.com"
INBOX_USER = "many-rooms@example.com"


class Waiter:
    """Resolves the first future whose predicate matches an incoming event."""

    def __init__(self) -> None:
        self.wanted: list[tuple[Any, asyncio.Future[float]]] = []

    def on_data(self, _client: Client, name: str, data: Any) -> None:
        now = time.perf_counter()
        for entry in list(self.wanted):
            predicate, future = entry
            if predicate(name, data) and not future.done():
                future.set_result(now)
                self.wanted.remove(entry)

    def expect(self, predicate: Any) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.wanted.append((predicate, future))
        return future


async def _ok(client: Client, event: str, data: dict[str, Any]) -> dict[str, Any]:
    reply = await client.request(event, data)
    if reply.get("ok") is not True:
        raise RuntimeError(f"{event}: {reply}")
    return reply


async def read_state_across_devices(urls: list[str], trials: int) -> dict[str, float]:
    seen: dict[Client, asyncio.Event] = {}

    def on_message(client: Client, _message: dict[str, Any], _offset: str | None) -> None:
        seen[client].set()

    waiter = Waiter()
    phone = Client(urls[0], "socketio", email=USER, on_message=on_message)
    laptop = Client(urls[1], "native", email=USER, on_message=on_message, on_data=waiter.on_data)
    writer = Client(urls[0], "native", email=OTHER)
    await phone.open({})
    await laptop.open()
    await writer.open()
    for client, email in ((phone, USER), (laptop, USER), (writer, OTHER)):
        seen[client] = asyncio.Event()
        await _ok(client, "join", {"email": email, "roomId": ROOM})
    latencies: list[float] = []
    for trial in range(trials):
        for event in seen.values():
            event.clear()
        sent = await _ok(writer, "send_message", {"roomId": ROOM, "text": f"t{trial}"})
        head = sent["message"]["seq"]
        await asyncio.wait_for(asyncio.gather(seen[phone].wait(), seen[laptop].wait()), 10)
        arrived = waiter.expect(
            lambda name, data, head=head: (
                name == "read_state"
                and data["roomId"] == ROOM
                and data["readSeq"] == head
                and data["unread"] == 0
            )
        )
        began = time.perf_counter()
        ack = await _ok(phone, "mark_read", {"roomId": ROOM, "seq": head})
        assert ack["unread"] == 0, ack
        latencies.append(await asyncio.wait_for(arrived, 10) - began)
        if trial % 200 == 199:
            progress(f"read_state: {trial + 1}/{trials}")
    for client in (phone, laptop, writer):
        await client.close()
    return latency_stats(latencies)


async def inbox_of_many_rooms(urls: list[str], n_rooms: int, trials: int) -> dict[str, Any]:
    rooms = [f"inbox-{i:05d}" for i in range(n_rooms)]
    reader = Client(urls[0], "native", email=INBOX_USER)
    writer = Client(urls[0], "native", email=OTHER)
    await reader.open()
    await writer.open()
    sent: dict[str, int] = {}
    progress(f"inbox: {n_rooms} rooms, joining and sending")

    async def post(room: str, text: str) -> int:
        await _ok(writer, "join", {"email": OTHER, "roomId": room})
        reply = await _ok(writer, "send_message", {"roomId": room, "text": text})
        await _ok(writer, "leave", {"roomId": room})
        sent[room] = sent.get(room, 0) + 1
        return int(reply["message"]["seq"])

    for i, room in enumerate(rooms):
        await _ok(reader, "join", {"email": INBOX_USER, "roomId": room})
        await _ok(reader, "leave", {"roomId": room})
        for k in range(1 + i % 3):
            await post(room, f"setup {k}")
    progress("inbox: first pages")
    first_page: list[float] = []
    for _ in range(200):
        began = time.perf_counter()
        page = await _ok(reader, "get_rooms", {"limit": 50, "follow": False})
        first_page.append(time.perf_counter() - began)
        for row in page["rooms"]:
            assert row["unread"] == sent[row["roomId"]], row
    progress("inbox: paging while messages arrive")
    stop = asyncio.Event()

    async def keep_sending(seed: int) -> int:
        rng, n = random.Random(seed), 0
        other = Client(urls[1], "native", email=OTHER)
        await other.open()
        while not stop.is_set():
            room = rooms[rng.randrange(n_rooms)]
            await _ok(other, "join", {"email": OTHER, "roomId": room})
            await _ok(other, "send_message", {"roomId": room, "text": "meanwhile"})
            await _ok(other, "leave", {"roomId": room})
            n += 1
        await other.close()
        return n

    senders = [asyncio.ensure_future(keep_sending(seed)) for seed in range(3)]
    pagings: list[dict[str, Any]] = []
    for _ in range(5):
        listed: list[str] = []
        page = await _ok(reader, "get_rooms", {"limit": 50, "follow": False})
        while True:
            listed += [r["roomId"] for r in page["rooms"]]
            if page["next"] is None:
                break
            page = await _ok(reader, "get_rooms", {"after": page["next"], "limit": 50})
        pagings.append(
            {"rows": len(listed), "distinct": len(set(listed)), "exact": sorted(listed) == rooms}
        )
    stop.set()
    sent_meanwhile = sum(await asyncio.gather(*senders))
    progress("inbox: live updates to two devices")
    waiters = [Waiter(), Waiter()]
    phone = Client(urls[0], "socketio", email=INBOX_USER, on_data=waiters[0].on_data)
    laptop = Client(urls[1], "native", email=INBOX_USER, on_data=waiters[1].on_data)
    await phone.open({})
    await laptop.open()
    follow = [
        await _ok(phone, "get_rooms", {"email": INBOX_USER, "limit": 1}),
        await _ok(laptop, "get_rooms", {"email": INBOX_USER, "limit": 1}),
    ]
    assert all(f["total"] == n_rooms for f in follow)
    listing = await _ok(reader, "get_rooms", {"limit": 200, "follow": False})
    order = []
    while True:
        order += [r["roomId"] for r in listing["rooms"]]
        if listing["next"] is None:
            break
        listing = await _ok(reader, "get_rooms", {"after": listing["next"], "limit": 200})
    live: list[float] = []
    moved_to_top = 0
    for trial in range(trials):
        oldest = order.pop()
        await _ok(writer, "join", {"email": OTHER, "roomId": oldest})
        arrivals = [
            w.expect(
                lambda name, data, room=oldest: name == "inbox_update" and data["roomId"] == room
            )
            for w in waiters
        ]
        began = time.perf_counter()
        await _ok(writer, "send_message", {"roomId": oldest, "text": f"live {trial}"})
        for arrived in arrivals:
            live.append(await asyncio.wait_for(arrived, 10) - began)
        await _ok(writer, "leave", {"roomId": oldest})
        order.insert(0, oldest)
        if trial % 50 == 0:
            top = await _ok(reader, "get_rooms", {"limit": 1, "follow": False})
            moved_to_top += top["rooms"][0]["roomId"] == oldest
        if trial % 100 == 99:
            progress(f"inbox live: {trial + 1}/{trials}")
    for client in (reader, writer, phone, laptop):
        await client.close()
    return {
        "first_page": latency_stats(first_page),
        "pagings": pagings,
        "sent_while_paging": sent_meanwhile,
        "live_update": latency_stats(live),
        "moved_to_top_checks": {"checked": (trials + 49) // 50, "on_top": moved_to_top},
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--rooms", type=int, default=2000)
    parser.add_argument("--inbox-trials", type=int, default=500)
    parser.add_argument("--env", nargs="*", default=[])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--shipped", action="store_true")
    args = parser.parse_args()
    raise_fd_limit()
    extra = dict(item.split("=", 1) for item in args.env)
    async with contextlib.AsyncExitStack() as stack:
        base = OUR_ENV
        if args.shipped:
            sink = await stack.enter_async_context(OtlpSink())
            base = SHIPPED_ENV | {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint}
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-state-"))
        config = StackConfig(data_dir=Path(tmp), gateways=2, gateway_port=0, extra_env=base | extra)
        urls = (await stack.enter_async_context(Stack(config))).gateway_urls
        figures: dict[str, Any] = {"env": extra, "shipped": args.shipped}
        figures["read_state"] = await read_state_across_devices(urls, args.trials)
        figures["inbox"] = await inbox_of_many_rooms(urls, args.rooms, args.inbox_trials)
    rs, inbox = figures["read_state"], figures["inbox"]
    print("| figure | n | p50 ms | p99 ms | max ms | target |")
    print("|---|---|---|---|---|---|")
    print(f"| mark_read → read_state on the other device | {rs['n']} | {rs['p50_ms']} | "
          f"{rs['p99_ms']} | {rs['max_ms']} | p99 ≤ 100 ms |")  # fmt: skip
    fp, lu = inbox["first_page"], inbox["live_update"]
    print(f"| get_rooms first page of 50 ({args.rooms} rooms) | {fp['n']} | {fp['p50_ms']} | "
          f"{fp['p99_ms']} | {fp['max_ms']} | p99 ≤ 200 ms |")  # fmt: skip
    print(f"| least recent room's message → inbox_update, each device | {lu['n']} | "
          f"{lu['p50_ms']} | {lu['p99_ms']} | {lu['max_ms']} | p99 ≤ 150 ms |")  # fmt: skip
    print(f"\npagings while {inbox['sent_while_paging']} messages arrived: {inbox['pagings']}")
    print(f"moved to the top: {inbox['moved_to_top_checks']}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    sys.exit(uvloop.run(main()))
