"""Benchmark: the fan-out workload through the whole system (every message stored).

    .venv/bin/python bench/fanout.py --rate 5 10 20 --seconds 15 [--protocol native|socketio]
    .venv/bin/python bench/fanout.py --sweep [--system ours|node|node-pg] [--protocol socketio]
    .venv/bin/python bench/fanout.py --shape [--system ...] [--protocol ...]
    .venv/bin/python bench/fanout.py --system node --generator official --rate 2 5 10

Starts its own system (``--system ours``: NATS, Redis, Postgres and one gateway, session
and history service; ``--system node``: Redis and the Node socket.io peer of bench/node/;
``--system node-pg``: the same peer storing every message in Postgres before its ack)
in a temporary directory, then for each rate r: 200 clients in 10 rooms of 20, each sending
64-byte messages at r msgs/s for the given time; every message is delivered to all 20
members (deliveries/s = 20 x sent/s). Clients speak raw WebSocket frames (native JSON or
Socket.IO v5 framing) from one uvloop process. Reports per rate: sent/s, deliveries/s,
delivered %, end-to-end latency p50/p99 (send -> receipt by each member), and CPU time of
every process of the system (ours plus NATS, Redis, Postgres), per delivery and per process.
"Sustained" = 100% delivered and p99 <= 250 ms.

``--generator official`` drives the Socket.IO side with the official Node client instead
(bench/node/loadgen.mjs: socket.io-client, one node process, every send with a clientMsgId
and an ack callback) and reports the same figures; the node process's own CPU is reported as
the load generator's, never counted in the system's.

``--shape`` runs one fixed step of another shape instead: 100 clients in 5 rooms of 20, each
sending at 20 msgs/s (40,000 deliveries/s), with the same figures plus a check of each
sender's acks: the seqs of its acked messages must rise in the order it sent them.

``--gateways N`` (ours) runs N gateway processes sharing the client port (SO_REUSEPORT):
the kernel spreads the clients over them.

``--sweep`` runs rising rates (the fixed rates of 10k, 20k and 40k deliveries/s always
included) until two in a row are not sustained, then one step halfway between the largest
sustained rate and the next, and reports the largest sustained deliveries/s. Progress goes to stderr once a second; ``--json FILE`` writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Awaitable, Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

import psutil
import uvloop
from loadgen import Client, percentile, progress, sent_at, timed_text
from systems import (
    NODE_DIR,
    VARIANTS,
    NodePeer,
    OurSystem,
    System,
    cpu_seconds,
    node_argv,
    raise_fd_limit,
)

__all__ = [
    "FIXED_DELIVERIES",
    "GENERATORS",
    "SHAPE",
    "SWEEP_RATES",
    "SYSTEMS",
    "make_system",
    "run_official",
    "run_rate",
    "run_shape",
    "sweep",
]

SUSTAINED_P99_S = 0.25
FIXED_DELIVERIES = (10_000, 20_000, 40_000)
"""Rates at which p99 is always reported, in deliveries/s."""
SWEEP_RATES = (1, 2.5, 5, 7.5, 10, 12.5, 15, 20, 25, 30, 40, 50, 65, 80, 100)
"""Messages/s per client tried by ``--sweep``, in order (200 clients: x 4,000 deliveries/s)."""
SHAPE = {"name": "100x20", "clients": 100, "rooms": 5, "rate_per_client": 20.0}
"""The fixed fan-out shape of :func:`run_shape`: 100 clients in 5 rooms of 20 at 20 msgs/s
each, 40,000 deliveries/s."""
SYSTEMS = (*VARIANTS, "node", "node-pg")
"""What :func:`make_system` starts: our configurations (bench/systems.py ``VARIANTS``;
``ours`` is the one we ship) and the two Node peers."""
GENERATORS = ("python", "official")
"""Load generators: ``python`` (raw frames from this process, bench/loadgen.py) and
``official`` (socket.io-client in a node process, bench/node/loadgen.mjs; Socket.IO only)."""
OFFICIAL_LOADGEN = NODE_DIR / "loadgen.mjs"


class _Member:
    """Latency bookkeeping of one client, and the seq of each of its acked sends."""

    __slots__ = ("acked", "latencies", "received")

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.received = 0
        self.acked: dict[int, int] = {}
        """Ack id (rises in send order) -> the acked message's seq."""

    def in_send_order(self) -> bool:
        """Whether the seqs of the acked sends rise in the order they were sent."""
        seqs = [self.acked[ack] for ack in sorted(self.acked)]
        return all(a < b for a, b in pairwise(seqs))


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
    check_order: bool = False,
    generator: str = "python",
) -> dict[str, Any]:
    """One step of the fan-out workload at ``rate`` messages/s per client.

    ``check_order``: also collect every ack and report how many senders got seqs that do not
    rise in their send order (and, for a system that can count them, the rows stored).
    ``generator="official"``: the step is :func:`run_official`'s (``protocol`` must be
    ``socketio``; the official client always collects its acks).
    """
    if generator == "official":
        if protocol != "socketio":
            raise ValueError("the official client speaks Socket.IO only")
        return await run_official(system, rate, seconds, clients=clients, rooms=rooms)
    run = f"{int(time.time() * 1000) % 10**8}"
    members: dict[int, _Member] = {}

    def on_message(client: Client, message: dict[str, Any], offset: str | None) -> None:
        member = members[id(client)]
        member.latencies.append(time.time() - sent_at(message["text"]))
        member.received += 1

    def on_ack(client: Client, ack: int, reply: Any) -> None:
        if isinstance(reply, dict) and reply.get("ok") and isinstance(reply.get("message"), dict):
            members[id(client)].acked[ack] = int(reply["message"]["seq"])

    conns = [
        Client(
            system.url,
            protocol,
            email=f"b{i}@bench.io",
            on_message=on_message,
            on_ack=on_ack if check_order else None,
        )
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

        def waiting() -> bool:
            if sum(m.received for m in members.values()) < expected:
                return True
            answered = sum(len(m.acked) for m in members.values())
            answered += sum(n for c in conns for n in c.errors.values())
            return check_order and answered < sent

        while waiting() and time.monotonic() < deadline:  # noqa: ASYNC110 - polls its own counters
            await asyncio.sleep(0.05)
    finally:
        ticker.cancel()
    elapsed = time.monotonic() - began
    by_process = {name: cpu_seconds([pid]) - cpu_before[name] for name, pid in pids.items()}
    own_cpu = sum(own.cpu_times()[:2]) - own_before
    await asyncio.gather(*(c.close() for c in conns))
    latencies = [x for m in members.values() for x in m.latencies]
    delivered = sum(m.received for m in members.values())
    p99 = percentile(latencies, 0.99)
    errors: dict[str, int] = {}
    for c in conns:
        for code, n in c.errors.items():
            errors[code] = errors.get(code, 0) + n
    order: dict[str, Any] = {}
    if check_order:
        stored_messages = getattr(system, "stored_messages", None)
        order = {
            "acked": sum(len(m.acked) for m in members.values()),
            "senders": clients,
            "senders_out_of_order": sum(not m.in_send_order() for m in members.values()),
            "stored_rows": None
            if stored_messages is None
            else await stored_messages(f"bench-{run}-"),
        }
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
        **_cpu_figures(by_process, delivered, elapsed),
        "loadgen_cpu_cores": round(own_cpu / elapsed, 2),
        "sustained": delivered >= expected > 0 and p99 <= SUSTAINED_P99_S,
        "send_errors": errors,
        "elapsed_s": round(elapsed, 1),
        **order,
    }


def _cpu_figures(by_process: dict[str, float], delivered: int, elapsed: float) -> dict[str, Any]:
    """The CPU keys of a step from each system process's CPU seconds over it."""
    cpu = sum(by_process.values())
    return {
        "cpu_us_per_delivery": round(cpu / max(delivered, 1) * 1e6, 1),
        "cpu_cores": round(cpu / elapsed, 2),
        "cpu_us_per_delivery_by_process": {
            name: round(seconds_used / max(delivered, 1) * 1e6, 2)
            for name, seconds_used in sorted(by_process.items())
        },
        "cpu_cores_by_process": {
            name: round(seconds_used / elapsed, 3)
            for name, seconds_used in sorted(by_process.items())
        },
    }


async def run_official(
    system: System,
    rate: float,
    seconds: float,
    *,
    clients: int = 200,
    rooms: int = 10,
    drain: float = 10,
    on_go: Callable[[], Awaitable[object]] | None = None,
) -> dict[str, Any]:
    """One fan-out step driven by the official socket.io-client (bench/node/loadgen.mjs).

    The node process connects and joins every client, says ``READY``; the system's CPU is
    read, ``go`` starts the sends, and the CPU is read again when the process prints its
    result (after up to ``drain`` seconds of waiting for stragglers, as :func:`run_rate`
    waits 10 s), before ``quit`` lets it disconnect. The node process's CPU is reported as
    ``loadgen_cpu_cores`` only. Returns :func:`run_rate`'s keys, the ack-order ones included.
    ``on_go`` is awaited once the sends have begun (bench/flames.py starts its profilers).
    """
    if "socketio" not in system.protocols:
        raise ValueError(f"{system.name} does not speak Socket.IO")
    if not (NODE_DIR / "node_modules" / "socket.io-client").is_dir():
        raise RuntimeError(
            "bench/node/node_modules/socket.io-client is missing: run `make bench-setup`"
        )
    prefix = f"bench-{int(time.time() * 1000) % 10**8}-"
    params = {
        "url": system.url,
        "clients": clients,
        "roomSize": clients // rooms,
        "roomPrefix": prefix,
        "rate": rate,
        "seconds": seconds,
        "textSize": len(timed_text()),
        "drain": drain,
        "control": True,
    }
    proc = await asyncio.create_subprocess_exec(
        *node_argv(str(OFFICIAL_LOADGEN), json.dumps(params)),
        cwd=NODE_DIR,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    stderr, stdin = proc.stderr, proc.stdin
    forward: asyncio.Future[None] | None = None
    try:
        async with asyncio.timeout(120):
            while not (line := (await stderr.readline()).decode()).startswith("READY"):
                if not line:
                    out = (await proc.stdout.read()).decode().strip()
                    raise RuntimeError(f"official load generator ended before READY: {out[:300]}")
                progress(line.rstrip())
        forward = asyncio.ensure_future(_forward(stderr))
        pids = system.cpu_pids()
        cpu_before = {name: cpu_seconds([pid]) for name, pid in pids.items()}
        began = time.monotonic()
        stdin.write(b"go\n")
        await stdin.drain()
        if on_go is not None:
            await on_go()
        async with asyncio.timeout(seconds + drain + 120):
            line = (await proc.stdout.readline()).decode()
        elapsed = time.monotonic() - began
        by_process = {name: cpu_seconds([pid]) - cpu_before[name] for name, pid in pids.items()}
        if not line:
            raise RuntimeError("official load generator printed no result")
        out = json.loads(line)
        stdin.write(b"quit\n")
        await stdin.drain()
        stdin.close()
        async with asyncio.timeout(30):
            await proc.wait()
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        if forward is not None:
            forward.cancel()
    stored_messages = getattr(system, "stored_messages", None)
    delivered, expected = out["received"], out["expected"]
    p99_s = out["p99_ms"] / 1e3 if out["p99_ms"] is not None else float("nan")
    return {
        "system": system.name,
        "protocol": "socketio",
        "generator": out["generator"],
        "clients": clients,
        "rooms": rooms,
        "rate_per_client": rate,
        "seconds": seconds,
        "sent_per_s": round(out["sent"] / seconds, 1),
        "deliveries_per_s": round(delivered / seconds, 1),
        "target_deliveries_per_s": round(rate * clients * (clients // rooms)),
        "delivered_pct": round(100 * delivered / max(expected, 1), 2),
        "p50_ms": out["p50_ms"] if out["p50_ms"] is not None else float("nan"),
        "p99_ms": out["p99_ms"] if out["p99_ms"] is not None else float("nan"),
        **_cpu_figures(by_process, delivered, elapsed),
        "loadgen_cpu_cores": round(out["cpu_s"] / max(out["elapsed_s"], 1e-9), 2),
        "loadgen_loop_delay_p99_ms": out["loop_delay_p99_ms"],
        "sustained": delivered >= expected > 0 and p99_s <= SUSTAINED_P99_S,
        "send_errors": out["errors"],
        "elapsed_s": round(elapsed, 1),
        "expected_deliveries": expected,
        "duplicates": out["duplicates"],
        "unanswered": out["unanswered"],
        "disconnects": out["disconnects"],
        "acked": out["acked"],
        "senders": out["senders"],
        "senders_out_of_order": out["senders_out_of_order"],
        "stored_rows": None if stored_messages is None else await stored_messages(prefix),
    }


async def _forward(stream: asyncio.StreamReader) -> None:
    """Hand the load generator's stderr lines on as progress."""
    while line := await stream.readline():
        progress(line.decode().rstrip())


async def run_shape(
    system: System, protocol: str, *, seconds: float, generator: str = "python"
) -> dict[str, Any]:
    """The fixed :data:`SHAPE` step (40,000 deliveries/s), each sender's ack order checked."""
    progress(
        f"{system.name}/{protocol}: {SHAPE['clients']} clients at {SHAPE['rate_per_client']:g} "
        f"msgs/s each, rooms of {SHAPE['clients'] // SHAPE['rooms']} ({generator} client)"
    )
    result = await run_rate(
        system,
        protocol,
        SHAPE["rate_per_client"],
        seconds,
        clients=SHAPE["clients"],
        rooms=SHAPE["rooms"],
        check_order=True,
        generator=generator,
    )
    progress(_line(result))
    return {"shape": SHAPE["name"], "clients": SHAPE["clients"], "rooms": SHAPE["rooms"]} | result


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
    order = (
        f" senders out of order {result['senders_out_of_order']}/{result['senders']}"
        f" acked {result['acked']} stored {result['stored_rows']}"
        if "senders_out_of_order" in result
        else ""
    )
    generator = " (official)" if "generator" in result else ""
    return (
        f"{result['system']:>7} {result['protocol']:>8}{generator} r={result['rate_per_client']:>5}: "
        f"{result['deliveries_per_s']:>9.0f} deliveries/s ({result['delivered_pct']}%), "
        f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
        f"{result['cpu_us_per_delivery']} us CPU/delivery, sustained={result['sustained']} "
        f"errors={result['send_errors']}{order}"
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
    generator: str = "python",
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
        result = await run_rate(
            system, protocol, rate, seconds, clients=clients, rooms=rooms, generator=generator
        )
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


def make_system(name: str, env: dict[str, str] | None = None, gateways: int = 1) -> System:
    """A fresh (not yet started) system of :data:`SYSTEMS`; ``env`` and ``gateways`` (on
    one shared port) for ours."""
    if name.startswith("ours"):
        return OurSystem(extra_env=env, gateways=gateways, variant=name)
    return NodePeer(durable=name == "node-pg")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--system", choices=SYSTEMS, default="ours")
    parser.add_argument("--rate", type=float, nargs="+", default=[5, 10, 20])
    parser.add_argument("--sweep", action="store_true", help="find the max sustained rate")
    parser.add_argument(
        "--shape", action="store_true", help="one step of 100 clients at 20 msgs/s each"
    )
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--protocol", choices=["native", "socketio"], default=None)
    parser.add_argument(
        "--generator",
        choices=GENERATORS,
        default="python",
        help="python: raw frames from this process; official: socket.io-client in node",
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--env",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="settings for our services (e.g. GATEWAY_APPEND_BATCHES_IN_FLIGHT=4)",
    )
    parser.add_argument(
        "--gateways",
        type=int,
        default=1,
        metavar="N",
        help="ours: N gateway processes sharing the client port (SO_REUSEPORT)",
    )
    args = parser.parse_args()
    raise_fd_limit()
    official = args.generator == "official"
    protocol = args.protocol or ("native" if args.system == "ours" and not official else "socketio")
    if official and protocol != "socketio":
        parser.error("the official client speaks Socket.IO only")
    env = dict(item.split("=", 1) for item in args.env)
    async with make_system(args.system, env, args.gateways) as system:
        if protocol not in system.protocols:
            parser.error(f"{args.system} does not speak {protocol}")
        if args.shape:
            output: Any = await run_shape(
                system, protocol, seconds=args.seconds, generator=args.generator
            )
            print(_line(output), flush=True)
        elif args.sweep:
            output = await sweep(
                system,
                protocol,
                seconds=args.seconds,
                clients=args.clients,
                rooms=args.rooms,
                generator=args.generator,
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
                    system,
                    protocol,
                    rate,
                    args.seconds,
                    clients=args.clients,
                    rooms=args.rooms,
                    generator=args.generator,
                )
                output.append(result)
                print(_line(result), flush=True)
    if args.json:
        args.json.write_text(json.dumps(output, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(uvloop.run(main()))
