"""Benchmark: memory per idle joined connection of the gateway process.

    .venv/bin/python bench/idle.py [--clients 2000] [--system ours|node|node-pg] [--protocol socketio]

Starts its own system, measures the RSS of the client-facing process (our gateway, or the
node process of the Node peer) once it is stable, then connects N clients, each joining a
room of 20, and lets them sit idle (each client answers pings and nothing else). Once every
client has joined, RSS is sampled until stable again; reports KiB per connection and how
many of the N are still connected at the end. RLIMIT_NOFILE is raised to the hard limit
(the gateway inherits it); N is capped a little below it.
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
from fanout import SYSTEMS, make_system
from loadgen import Client, progress
from systems import System, raise_fd_limit

__all__ = ["run_idle", "stable_rss"]

CONNECT_CONCURRENCY = 200


async def stable_rss(
    pid: int, *, window: int = 6, tolerance: float = 0.005, limit: float = 60
) -> int:
    """RSS in bytes once ``window`` samples 0.5 s apart agree within ``tolerance``."""
    proc = psutil.Process(pid)
    samples: list[int] = []
    deadline = time.monotonic() + limit
    while True:
        samples.append(proc.memory_info().rss)
        recent = samples[-window:]
        if len(recent) == window and (max(recent) - min(recent)) <= tolerance * max(recent):
            return round(sum(recent) / window)
        if time.monotonic() > deadline:
            return samples[-1]
        await asyncio.sleep(0.5)


async def run_idle(
    system: System, protocol: str, clients: int, *, room_size: int = 20, settle_s: float = 5
) -> dict[str, Any]:
    """Connect ``clients`` idle clients in rooms of ``room_size``; RSS per connection."""
    pid = system.gateway_pid()
    progress(f"{system.name}/{protocol}: waiting for a stable RSS of pid {pid} before connecting")
    before = await stable_rss(pid)
    run = f"{int(time.time() * 1000) % 10**8}"
    conns = [Client(system.url, protocol, email=f"i{i}@bench.io") for i in range(clients)]
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    failures: dict[str, int] = {}
    joined = 0
    began = time.monotonic()

    async def connect(i: int) -> None:
        nonlocal joined
        c = conns[i]
        room = f"idle-{run}-{i // room_size}"
        async with gate:
            for attempt in range(3):
                try:
                    await c.open({"recovery": False} if protocol == "socketio" else None)
                    reply = await c.request("join", {"email": c.email, "roomId": room})
                    if reply.get("ok"):
                        joined += 1
                        return
                    key = str(reply.get("error", {}).get("code"))
                except Exception as exc:
                    key = type(exc).__name__
                failures[key] = failures.get(key, 0) + 1
                await c.close()
                await asyncio.sleep(0.2 * (attempt + 1))

    async def report() -> None:
        while True:
            await asyncio.sleep(1)
            progress(
                f"  {joined}/{clients} joined, RSS {psutil.Process(pid).memory_info().rss / 2**20:.1f} MiB"
            )

    ticker = asyncio.ensure_future(report())
    try:
        await asyncio.gather(*(connect(i) for i in range(clients)))
    finally:
        ticker.cancel()
    connect_s = time.monotonic() - began
    progress(
        f"  {joined}/{clients} joined in {connect_s:.1f} s; idle {settle_s:.0f} s, then waiting for a stable RSS"
    )
    await asyncio.sleep(settle_s)
    after = await stable_rss(pid)
    still = sum(1 for c in conns if c.is_open)
    await asyncio.gather(*(c.close() for c in conns))
    return {
        "system": system.name,
        "protocol": protocol,
        "clients": clients,
        "joined": joined,
        "still_connected": still,
        "all_connected": still == clients,
        "connect_s": round(connect_s, 1),
        "rss_before_mib": round(before / 2**20, 1),
        "rss_after_mib": round(after / 2**20, 1),
        "kib_per_connection": round((after - before) / max(still, 1) / 1024, 2),
        "connect_failures": failures,
    }


def fd_capped(clients: int) -> int:
    """``clients``, or as many as the fd limit allows (it is shared by client and gateway)."""
    limit = raise_fd_limit()
    cap = limit - 200
    if clients > cap:
        progress(f"RLIMIT_NOFILE is {limit}: {clients} clients capped to {cap}")
        return cap
    return clients


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--system", choices=SYSTEMS, default="ours")
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--protocol", choices=["native", "socketio"], default="socketio")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    clients = fd_capped(args.clients)
    async with make_system(args.system) as system:
        result = await run_idle(system, args.protocol, clients)
    print(
        f"{result['system']}/{result['protocol']}: {result['still_connected']}/{clients} connected, "
        f"RSS {result['rss_before_mib']} -> {result['rss_after_mib']} MiB, "
        f"{result['kib_per_connection']} KiB per connection",
        flush=True,
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(uvloop.run(main()))
