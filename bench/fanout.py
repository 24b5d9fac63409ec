"""Benchmark: the fan-out workload through the whole system (every message stored).

    .venv/bin/python bench/fanout.py --rate 5 10 20 --seconds 15 [--protocol native|socketio]
    .venv/bin/python bench/fanout.py --sweep [--system ours|node] [--protocol socketio]

Starts its own system (``--system ours``: NATS, Redis, Postgres and one gateway, session
and history service; ``--system node``: Redis and the Node socket.io peer of bench/node/)
in a temporary directory, then for each rate r: 200 clients in 10 rooms of 20, each sending
64-byte messages at r msgs/s for the given time; every message is delivered to all 20
members (deliveries/s = 20 x sent/s). Clients speak raw WebSocket frames (native JSON or
Socket.IO v5 framing) from one uvloop process. Reports per rate: sent/s, deliveries/s,
delivered %, end-to-end latency p50/p99 (send -> receipt by each member), and CPU time of
every process of the system (ours plus NATS, Redis, Postgres), per delivery.
"Sustained" = 100% delivered and p99 <= 250 ms.

``--sweep`` runs rising rates (the fixed rates of 10k, 20k and 40k deliveries/s always
included) until two in a row are not sustained, then one step halfway between the largest
sustained rate and the next, and reports the largest sustained deliveries/s. Progress goes to stderr once a second; ``--json FILE`` writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import uvloop
from loadgen import Client, percentile, progress, sent_at, timed_text
from systems import NodePeer, OurSystem, System, cpu_seconds, raise_fd_limit

__all__ = ["FIXED_DELIVERIES", "SWEEP_RATES", "run_rate", "sweep"]

SUSTAINED_P99_S = 0.25
FIXED_DELIVERIES = (10_000, 20_000, 40_000)
"""Rates at which p99 is always reported, in deliveries/s."""
SWEEP_RATES = (1, 2.5, 5, 7.5, 10, 12.5, 15, 20, 25, 30, 40, 50, 65, 80, 100)
"""Messages/s per client tried by ``--sweep``, in order (200 clients: x 4,000 deliveries/s)."""


class _Member:
    """Latency bookkeeping of one client."""

    __slots__ = ("latencies", "received")

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.received = 0


async def _send_for(client: Client, room: str, n: int, rate: float, seconds: float) -> int:
    interval = 1.0 / rate
    start = time.monotonic() + (n % 100) / 100 * interval  # spread the senders
    sent = 0
    total = max(1, round(rate * seconds))
    while sent < total:
        due = start + sent * interval
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if not client.is_open:
            return sent
        await client.emit("send_message", {"roomId": room, "text": timed_text()})
        sent += 1
    return sent


async def run_rate(
    system: System,
    protocol: str,
    rate: float,
    seconds: float,
    *,
    clients: int = 200,
    rooms: int = 10,
) -> dict[str, Any]:
    """One step of the fan-out workload at ``rate`` messages/s per client."""
    run = f"{int(time.time() * 1000) % 10**8}"
    members: dict[int, _Member] = {}

    def on_message(client: Client, message: dict[str, Any], offset: str | None) -> None:
        member = members[id(client)]
        member.latencies.append(time.time() - sent_at(message["text"]))
        member.received += 1

    conns = [
        Client(system.url, protocol, email=f"b{i}@bench.io", on_message=on_message)
        for i in range(clients)
    ]
    for c in conns:
        members[id(c)] = _Member()
    room_of = [f"bench-{run}-{i % rooms}" for i in range(clients)]

    async def connect(i: int) -> None:
        c = conns[i]
        await c.open({"recovery": False} if protocol == "socketio" else None)
        reply = await c.request("join", {"email": c.email, "roomId": room_of[i]})
        if not reply.get("ok"):
            raise RuntimeError(f"join failed: {reply}")

    await asyncio.gather(*(connect(i) for i in range(clients)))
    pids = system.cpu_pids()
    cpu_before = {name: cpu_seconds([pid]) for name, pid in pids.items()}
    own = psutil.Process()
    own_before = sum(own.cpu_times()[:2])
    began = time.monotonic()
    ticker = asyncio.ensure_future(_tick(members, began, seconds))
    try:
        sent = sum(
            await asyncio.gather(
                *(_send_for(c, room_of[i], i, rate, seconds) for i, c in enumerate(conns))
            )
        )
        expected = sent * (clients // rooms)
        deadline = time.monotonic() + 10
        while sum(m.received for m in members.values()) < expected and time.monotonic() < deadline:  # noqa: ASYNC110 - polls its own counters
            await asyncio.sleep(0.05)
    finally:
        ticker.cancel()
    elapsed = time.monotonic() - began
    by_process = {name: cpu_seconds([pid]) - cpu_before[name] for name, pid in pids.items()}
    cpu = sum(by_process.values())
    own_cpu = sum(own.cpu_times()[:2]) - own_before
    await asyncio.gather(*(c.close() for c in conns))
    latencies = [x for m in members.values() for x in m.latencies]
    delivered = sum(m.received for m in members.values())
    p99 = percentile(latencies, 0.99)
    errors: dict[str, int] = {}
    for c in conns:
        for code, n in c.errors.items():
            errors[code] = errors.get(code, 0) + n
    return {
        "system": system.name,
        "protocol": protocol,
        "rate_per_client": rate,
        "seconds": seconds,
        "sent_per_s": round(sent / seconds, 1),
        "deliveries_per_s": round(delivered / seconds, 1),
        "target_deliveries_per_s": round(rate * clients * (clients // rooms)),
        "delivered_pct": round(100 * delivered / max(expected, 1), 2),
        "p50_ms": round(percentile(latencies, 0.5) * 1e3, 1),
        "p99_ms": round(p99 * 1e3, 1),
        "cpu_us_per_delivery": round(cpu / max(delivered, 1) * 1e6, 1),
        "cpu_cores": round(cpu / elapsed, 2),
        "cpu_us_per_delivery_by_process": {
            name: round(seconds_used / max(delivered, 1) * 1e6, 2)
            for name, seconds_used in sorted(by_process.items())
        },
        "loadgen_cpu_cores": round(own_cpu / elapsed, 2),
        "sustained": delivered >= expected > 0 and p99 <= SUSTAINED_P99_S,
        "send_errors": errors,
        "elapsed_s": round(elapsed, 1),
    }


async def _tick(members: dict[int, _Member], began: float, seconds: float) -> None:
    last = 0
    while True:
        await asyncio.sleep(1)
        received = sum(m.received for m in members.values())
        progress(
            f"  {time.monotonic() - began:4.0f}/{seconds:.0f} s: {received - last:>7} deliveries in the last second"
        )
        last = received


def _line(result: dict[str, Any]) -> str:
    return (
        f"{result['system']:>5} {result['protocol']:>8} r={result['rate_per_client']:>5}: "
        f"{result['deliveries_per_s']:>9.0f} deliveries/s ({result['delivered_pct']}%), "
        f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
        f"{result['cpu_us_per_delivery']} us CPU/delivery, sustained={result['sustained']} "
        f"errors={result['send_errors']}"
    )


async def sweep(
    system: System,
    protocol: str,
    *,
    seconds: float,
    rates: tuple[float, ...] = SWEEP_RATES,
    clients: int = 200,
    rooms: int = 10,
    refine: bool = True,
) -> dict[str, Any]:
    """Raise the rate until two steps in a row are not sustained (one noisy step does not end
    the sweep; the fixed rates always run), then try halfway between the largest sustained
    rate and the next one up. The largest sustained deliveries/s wins."""
    per_rate = clients * (clients // rooms)
    fixed = {d / per_rate for d in FIXED_DELIVERIES}
    steps: list[dict[str, Any]] = []
    failures_in_a_row = 0

    async def step(rate: float) -> None:
        progress(
            f"{system.name}/{protocol}: r={rate}/s per client ({rate * per_rate:,.0f} deliveries/s target)"
        )
        result = await run_rate(system, protocol, rate, seconds, clients=clients, rooms=rooms)
        progress(_line(result))
        steps.append(result)

    for rate in sorted(set(rates) | fixed):
        if failures_in_a_row >= 2 and rate not in fixed:
            continue
        await step(rate)
        if failures_in_a_row < 2:
            failures_in_a_row = 0 if steps[-1]["sustained"] else failures_in_a_row + 1
    if refine:
        best = max((s["rate_per_client"] for s in steps if s["sustained"]), default=0.0)
        above = min(
            (s["rate_per_client"] for s in steps if s["rate_per_client"] > best), default=None
        )
        if above is not None:
            rate = round((best + above) / 2, 2)
            if rate not in {s["rate_per_client"] for s in steps}:
                await step(rate)
    steps.sort(key=lambda s: s["rate_per_client"])
    top = max(
        (s for s in steps if s["sustained"]), key=lambda s: s["deliveries_per_s"], default=None
    )
    return {
        "system": system.name,
        "protocol": protocol,
        "max_sustained_deliveries_per_s": top["deliveries_per_s"] if top else 0,
        "max_sustained_rate_per_client": top["rate_per_client"] if top else 0,
        "steps": steps,
    }


def make_system(name: str) -> System:
    return OurSystem() if name == "ours" else NodePeer()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--system", choices=["ours", "node"], default="ours")
    parser.add_argument("--rate", type=float, nargs="+", default=[5, 10, 20])
    parser.add_argument("--sweep", action="store_true", help="find the max sustained rate")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--protocol", choices=["native", "socketio"], default=None)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    raise_fd_limit()
    protocol = args.protocol or ("native" if args.system == "ours" else "socketio")
    async with make_system(args.system) as system:
        if protocol not in system.protocols:
            parser.error(f"{args.system} does not speak {protocol}")
        if args.sweep:
            output: Any = await sweep(
                system, protocol, seconds=args.seconds, clients=args.clients, rooms=args.rooms
            )
            for step in output["steps"]:
                print(_line(step), flush=True)
            print(
                f"max sustained: {output['max_sustained_deliveries_per_s']:,.0f} deliveries/s "
                f"(r={output['max_sustained_rate_per_client']})",
                flush=True,
            )
        else:
            output = []
            for rate in args.rate:
                progress(f"rate {rate}/s per client: running {args.seconds:.0f} s ...")
                result = await run_rate(
                    system, protocol, rate, args.seconds, clients=args.clients, rooms=args.rooms
                )
                output.append(result)
                print(_line(result), flush=True)
    if args.json:
        args.json.write_text(json.dumps(output, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(uvloop.run(main()))
