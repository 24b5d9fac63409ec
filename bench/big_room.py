"""Benchmark: one room filling up to N members (issue 18), then one message to all of them.

    .venv/bin/python bench/big_room.py                     # 1,000 at 200 joins/s, 10,000 at 500/s
    .venv/bin/python bench/big_room.py --steps 1000:200 10000:500 [--protocol socketio native]
        [--gateways 2] [--messages 5] [--env KEY=VALUE ...] [--json FILE]

For each step ``N:R`` the script starts our system fresh (NATS, Redis, Postgres, session,
history, ``--gateways`` gateway processes sharing one port; tracing off, per-address limits
lifted), connects N raw-frame clients (bench/loadgen.py; paced, before anything is timed;
``--protocol`` with several values alternates them), then sends their N joins of ONE room on
an open-loop schedule: join i leaves at t0 + i/R whether or not earlier ones were answered.

Reported per step: achieved joins/s (joins acked ok / time from t0 to the last ack); join
ack latency p50/p99/max (send -> ack); presence bytes and frames per join (every
``user_joined``, ``user_left`` and ``presence_diff`` text message received by any client from
t0 until ``GATEWAY_PRESENCE_INTERVAL_MS`` + 0.5 s after the last ack, divided by N); Redis
``used_memory`` growth over the fill divided by N; CPU seconds of every process of the
system over the same window; then, the room full, ``--messages`` 64-byte timed messages from
one member 1 s apart and their delivery latency to all N members (p50/p99/max over all
deliveries). Progress goes to stderr, a Markdown table and the issue's targets to stdout;
``--json FILE`` writes JSON, which also holds each message's latencies (``msg_each``),
presence frames and bytes by event, and CPU seconds by process.

RLIMIT_NOFILE is raised to the hard limit; the load generator needs one descriptor per client
and so does the gateway: ``--gateways 2`` halves a gateway's share when its limit is in the way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import uvloop
from loadgen import Client, percentile, progress, sent_at, timed_text
from redis.asyncio import Redis
from systems import OurSystem, cpu_seconds, raise_fd_limit

__all__ = ["PRESENCE_EVENTS", "Step", "redis_used_memory", "run_step"]

PRESENCE_EVENTS = frozenset({"user_joined", "user_left", "presence_diff"})
PRESENCE_SETTLE_S = 1.5
"""After the last join ack: the presence interval (1 s) and a margin, for the last diffs."""
CONNECT_CONCURRENCY = 100
FD_RESERVE = 200
"""File descriptors the load generator keeps for itself besides one per client."""


@dataclass(frozen=True, slots=True)
class Step:
    members: int
    rate: float

    @classmethod
    def parse(cls, text: str) -> Step:
        members, rate = text.split(":")
        return cls(int(members), float(rate))


@dataclass(slots=True)
class _Tally:
    """What the clients' callbacks count (all from the transport's callbacks, no awaits)."""

    n: int
    index: dict[int, int] = field(default_factory=dict)
    sent: list[float] = field(default_factory=list)
    join_ack: list[int] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)
    acked_at: list[float] = field(default_factory=list)
    failed: dict[str, int] = field(default_factory=dict)
    user_count: int = 0
    counting: bool = False
    presence_bytes: int = 0
    presence_frames: int = 0
    by_event: dict[str, int] = field(default_factory=dict)
    bytes_by_event: dict[str, int] = field(default_factory=dict)
    deliveries: list[float] = field(default_factory=list)
    by_seq: dict[int, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sent = [math.nan] * self.n
        self.join_ack = [-1] * self.n
        self.latency = [math.nan] * self.n
        self.acked_at = [math.nan] * self.n

    @property
    def answered(self) -> int:
        return sum(1 for x in self.latency if not math.isnan(x)) + sum(self.failed.values())

    def on_ack(self, client: Client, ack: int, reply: Any) -> None:
        i = self.index[id(client)]
        if ack != self.join_ack[i]:
            return
        now = time.monotonic()
        if isinstance(reply, dict) and reply.get("ok"):
            self.latency[i] = now - self.sent[i]
            self.acked_at[i] = now
            self.user_count = max(self.user_count, int(reply.get("userCount", 0)))
        else:
            code = str(reply.get("error", {}).get("code")) if isinstance(reply, dict) else "?"
            self.failed[code] = self.failed.get(code, 0) + 1

    def on_event(self, client: Client, name: str, frame_len: int) -> None:
        if self.counting:
            self.by_event[name] = self.by_event.get(name, 0) + 1
            if name in PRESENCE_EVENTS:
                self.presence_bytes += frame_len
                self.presence_frames += 1
                self.bytes_by_event[name] = self.bytes_by_event.get(name, 0) + frame_len

    def on_message(self, client: Client, message: dict[str, Any], offset: str | None) -> None:
        latency = time.time() - sent_at(message["text"])
        self.deliveries.append(latency)
        self.by_seq.setdefault(int(message["seq"]), []).append(latency)


async def redis_used_memory(url: str) -> int:
    """``INFO memory`` ``used_memory`` of the Redis at ``url``, in bytes."""
    redis = Redis.from_url(url)
    try:
        return int((await redis.info("memory"))["used_memory"])
    finally:
        await redis.aclose()


async def _connect_all(conns: list[Client]) -> dict[str, int]:
    """Open every client, ``CONNECT_CONCURRENCY`` at a time, three tries each."""
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    failures: dict[str, int] = {}

    async def one(c: Client) -> None:
        async with gate:
            for attempt in range(3):
                try:
                    await c.open({"recovery": False} if c.protocol == "socketio" else None)
                    return
                except Exception as exc:
                    key = type(exc).__name__
                    failures[key] = failures.get(key, 0) + 1
                    await c.close()
                    await asyncio.sleep(0.2 * (attempt + 1))

    async def report() -> None:
        while True:
            await asyncio.sleep(2)
            progress(f"  connected {sum(c.is_open for c in conns)}/{len(conns)}")

    ticker = asyncio.ensure_future(report())
    try:
        await asyncio.gather(*(one(c) for c in conns))
    finally:
        ticker.cancel()
    return failures


async def _send_joins(conns: list[Client], room: str, rate: float, t0: float, t: _Tally) -> float:
    """Join i at ``t0 + i / rate`` (open loop); returns the largest lag behind schedule."""
    lag = 0.0
    for i, c in enumerate(conns):
        due = t0 + i / rate
        if (delay := due - time.monotonic()) > 0:
            await asyncio.sleep(delay)
        if not c.is_open:
            t.failed["not connected"] = t.failed.get("not connected", 0) + 1
            continue
        t.sent[i] = time.monotonic()
        lag = max(lag, t.sent[i] - due)
        t.join_ack[i] = await c.emit("join", {"email": c.email, "roomId": room})
    return lag


async def _wait_for(done: Callable[[], bool], limit: float) -> None:
    """Poll ``done()`` every 50 ms for up to ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while not done() and time.monotonic() < deadline:  # noqa: ASYNC110 - polls our counters
        await asyncio.sleep(0.05)


def _ms(seconds: float) -> float:
    return round(seconds * 1e3, 1)


async def run_step(
    step: Step,
    protocols: list[str],
    *,
    gateways: int,
    messages: int,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One fill of one room to ``step.members`` at ``step.rate`` joins/s on a fresh system."""
    n = step.members
    t = _Tally(n)
    room = f"big-{int(time.time() * 1000) % 10**8}"
    async with OurSystem(gateways=gateways, extra_env=env) as system:
        conns = [
            Client(
                system.url,
                protocols[i % len(protocols)],
                email=f"m{i}@bench.io",
                on_message=t.on_message,
                on_ack=t.on_ack,
                on_event=t.on_event,
            )
            for i in range(n)
        ]
        t.index = {id(c): i for i, c in enumerate(conns)}
        progress(f"{n} members at {step.rate:g} joins/s: connecting ({'+'.join(protocols)})")
        began = time.monotonic()
        connect_failures = await _connect_all(conns)
        progress(
            f"  {sum(c.is_open for c in conns)}/{n} connected in {time.monotonic() - began:.1f} s"
        )
        await asyncio.sleep(2)  # let the connection storm settle before anything is timed

        redis_before = await redis_used_memory(system.stack.redis_url)
        pids = system.cpu_pids()
        cpu_before = {name: cpu_seconds([pid]) for name, pid in pids.items()}
        own = psutil.Process()
        own_before = sum(own.cpu_times()[:2])
        t.counting = True
        t0 = time.monotonic() + 0.1

        async def report() -> None:
            while True:
                await asyncio.sleep(1)
                lat = [x for x in t.latency if not math.isnan(x)]
                progress(
                    f"  {time.monotonic() - t0:5.1f} s: acked {len(lat)}/{n}, failed "
                    f"{sum(t.failed.values())}, join p99 {_ms(percentile(lat, 0.99))} ms, "
                    f"presence {t.presence_bytes / 1e6:.1f} MB in {t.presence_frames} frames"
                )

        ticker = asyncio.ensure_future(report())
        try:
            lag = await _send_joins(conns, room, step.rate, t0, t)
            await _wait_for(lambda: t.answered >= n, 60)
            acked = [x for x in t.acked_at if not math.isnan(x)]
            fill_s = (max(acked) if acked else time.monotonic()) - t0
            await asyncio.sleep(PRESENCE_SETTLE_S)
        finally:
            ticker.cancel()
        t.counting = False
        window = time.monotonic() - t0
        by_process = {name: cpu_seconds([pid]) - cpu_before[name] for name, pid in pids.items()}
        own_cpu = sum(own.cpu_times()[:2]) - own_before
        redis_after = await redis_used_memory(system.stack.redis_url)
        latencies = [x for x in t.latency if not math.isnan(x)]
        ok = len(latencies)
        progress(f"  fill: {ok}/{n} acked ok in {fill_s:.1f} s, failed {t.failed}")

        sender = next((c for c in conns if c.is_open), None)
        members = (
            await sender.request("get_members", {"roomId": room, "limit": 1})
            if sender is not None
            else {}
        )
        room_count = int(members.get("userCount", -1))
        receivers = sum(c.is_open and not math.isnan(t.latency[i]) for i, c in enumerate(conns))
        for k in range(messages):
            if sender is not None and sender.is_open:
                await sender.emit("send_message", {"roomId": room, "text": timed_text()})
            await asyncio.sleep(1 if k < messages - 1 else 0)
        await _wait_for(lambda: len(t.deliveries) >= messages * receivers, 15)
        progress(
            f"  messages: {len(t.deliveries)}/{messages * receivers} delivered, "
            f"p99 {_ms(percentile(t.deliveries, 0.99))} ms"
        )
        still_open = sum(c.is_open for c in conns)
        close_codes: dict[str, int] = {}
        for c in conns:
            if c.ws is not None and not c.is_open:
                key = str(c.close_code)
                close_codes[key] = close_codes.get(key, 0) + 1
        await asyncio.gather(*(c.close() for c in conns))
    cpu = sum(by_process.values())
    return {
        "members": n,
        "rate": step.rate,
        "protocols": protocols,
        "gateways": gateways,
        "connect_failures": connect_failures,
        "joins_ok": ok,
        "join_errors": t.failed,
        "joins_per_s": round(ok / fill_s, 1) if fill_s > 0 else None,
        "fill_s": round(fill_s, 2),
        "send_lag_max_ms": _ms(lag),
        "join_p50_ms": _ms(percentile(latencies, 0.5)),
        "join_p99_ms": _ms(percentile(latencies, 0.99)),
        "join_max_ms": _ms(max(latencies, default=math.nan)),
        "room_count": room_count,
        "max_user_count_in_acks": t.user_count,
        "presence_bytes": t.presence_bytes,
        "presence_frames": t.presence_frames,
        "presence_bytes_per_join": round(t.presence_bytes / n, 1),
        "presence_frames_per_join": round(t.presence_frames / n, 2),
        "events_in_window": dict(sorted(t.by_event.items())),
        "presence_bytes_by_event": dict(sorted(t.bytes_by_event.items())),
        "redis_before_mib": round(redis_before / 2**20, 2),
        "redis_after_mib": round(redis_after / 2**20, 2),
        "redis_bytes_per_member": round((redis_after - redis_before) / n),
        "window_s": round(window, 2),
        "cpu_s": round(cpu, 2),
        "cpu_us_per_join": round(cpu / max(ok, 1) * 1e6),
        "cpu_s_by_process": {name: round(s, 2) for name, s in sorted(by_process.items())},
        "loadgen_cpu_s": round(own_cpu, 2),
        "messages": messages,
        "deliveries": len(t.deliveries),
        "expected_deliveries": messages * receivers,
        "msg_p50_ms": _ms(percentile(t.deliveries, 0.5)),
        "msg_p99_ms": _ms(percentile(t.deliveries, 0.99)),
        "msg_max_ms": _ms(max(t.deliveries, default=math.nan)),
        "msg_each": [
            {
                "seq": seq,
                "deliveries": len(x),
                "p50_ms": _ms(percentile(x, 0.5)),
                "p99_ms": _ms(percentile(x, 0.99)),
                "max_ms": _ms(max(x)),
            }
            for seq, x in sorted(t.by_seq.items())
        ],
        "still_connected": still_open,
        "close_codes": close_codes,
    }


JOIN_P99_TARGET_MS = {1000: 100.0, 10_000: 500.0}
"""Issue 18: join ack p99 by room size (at 200 and 500 joins/s)."""
MESSAGE_P99_TARGET_MS = 250.0
"""Issue 18: one message to every member of the 10,000-member room."""


def _targets(results: list[dict[str, Any]]) -> str:
    rows = ["| target | measured | met |", "| :--- | :--- | :---: |"]
    for r in results:
        limit = JOIN_P99_TARGET_MS.get(r["members"])
        if limit is not None:
            met = r["joins_ok"] == r["members"] and r["join_p99_ms"] <= limit
            rows.append(
                f"| {r['members']:,} members at {r['rate']:g}/s: join p99 ≤ {limit:g} ms "
                f"| {r['join_p99_ms']} ms ({r['joins_ok']:,} of {r['members']:,} acked) "
                f"| {'yes' if met else '**no**'} |"
            )
        if r["members"] >= 10_000:
            met = (
                r["deliveries"] == r["expected_deliveries"] > 0
                and r["msg_p99_ms"] <= MESSAGE_P99_TARGET_MS
            )
            rows.append(
                f"| one message to all {r['members']:,}: p99 ≤ {MESSAGE_P99_TARGET_MS:g} ms "
                f"| {r['msg_p99_ms']} ms ({r['deliveries']:,} of {r['expected_deliveries']:,}) "
                f"| {'yes' if met else '**no**'} |"
            )
    for r in results:
        # What one member receives past the list size: at most one presence_diff per second
        # per room, of bounded size, whatever the room's size (docs/protocol.md 4.12).
        frames = r["events_in_window"].get("presence_diff", 0)
        size = r["presence_bytes_by_event"].get("presence_diff", 0) / max(frames, 1)
        member_s = r["members"] * (r["fill_s"] / 2 + (r["window_s"] - r["fill_s"]))
        per_s = frames / max(member_s, 1e-9)
        rows.append(
            f"| presence a member receives, {r['members']:,} members "
            f"| {per_s:.2f} presence_diff per member-second, {size:,.0f} B each "
            f"({size * per_s / r['rate']:.1f} B per join) | {'yes' if per_s <= 1.1 else '**no**'} |"
        )
    return "\n".join(rows)


def _table(results: list[dict[str, Any]]) -> str:
    head = (
        "| members | joins/s offered | joins/s achieved | join ack p50 | p99 | max "
        "| presence B/join | presence frames/join | Redis B/member "
        "| message deliveries | delivery p50 | p99 | max | system CPU over the fill "
        "| load generator CPU | cut / errors |\n"
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: | ---: | :--- |"
    )
    rows = [head]
    for r in results:
        errors = {**r["connect_failures"], **r["join_errors"]}
        rows.append(
            f"| {r['members']:,} | {r['rate']:g} | {r['joins_per_s']} | {r['join_p50_ms']} ms "
            f"| {r['join_p99_ms']} ms | {r['join_max_ms']} ms | {r['presence_bytes_per_join']:,} "
            f"| {r['presence_frames_per_join']} | {r['redis_bytes_per_member']:,} "
            f"| {r['deliveries']:,} of {r['expected_deliveries']:,} | {r['msg_p50_ms']} ms "
            f"| {r['msg_p99_ms']} ms | {r['msg_max_ms']} ms "
            f"| {r['cpu_s']} s in {r['window_s']} s ({r['cpu_us_per_join']:,} µs/join) "
            f"| {r['loadgen_cpu_s']} s | {r['members'] - r['still_connected']} cut; "
            f"{errors or 'none'} |"
        )
    return "\n".join(rows)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--steps",
        nargs="+",
        type=Step.parse,
        default=[Step(1000, 200), Step(10_000, 500)],
        metavar="N:RATE",
        help="members and joins/s of each step (default 1000:200 10000:500)",
    )
    parser.add_argument(
        "--protocol", nargs="+", choices=["native", "socketio"], default=["socketio"]
    )
    parser.add_argument("--gateways", type=int, default=1, metavar="N")
    parser.add_argument("--messages", type=int, default=5)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--env",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="settings for our services (e.g. GATEWAY_PING_INTERVAL_MS=300000)",
    )
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    limit = raise_fd_limit()
    results: list[dict[str, Any]] = []
    for step in args.steps:
        if step.members > limit - FD_RESERVE:
            progress(f"skipping {step.members}: RLIMIT_NOFILE {limit} leaves too few for clients")
            continue
        result = await run_step(
            step, args.protocol, gateways=args.gateways, messages=args.messages, env=env
        )
        progress(json.dumps(result))
        results.append(result)
    print(_table(results) + "\n\n" + _targets(results), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(uvloop.run(main()))
