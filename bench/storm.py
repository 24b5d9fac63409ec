"""Benchmark: a reconnect storm after a gateway restart (Socket.IO connection state recovery).

    .venv/bin/python bench/storm.py [--clients 2000] [--system ours|node|node-pg] [--rate 1]

Starts its own system, connects N Socket.IO clients with connection state recovery
(docs/protocol.md 8.3) in rooms of 20, and lets one member of each room send ``--rate``
messages/s. Then it restarts the gateway (SIGTERM: clients are closed with 1012; the same
port is served again once the new process is ready). Every client reconnects like
socket.io-client does (delay 1 s doubling up to 5 s, +-50% jitter) and sends
``40{"pid","offset"}``; the same ``pid`` in the reply means recovered, otherwise it rejoins.
Reports the time from the SIGTERM until every client is back (and until every one is
recovered), how many were not recovered, and messages missed: per client, every ``seq`` of
its room from its join to the room's final head (read with ``get_history``) that it never
received. The Node peer cannot recover a session across a restart (the Redis adapter has no
connection state recovery and its history is in memory): only its reconnect time is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import uvloop
from fanout import SYSTEMS, make_system
from idle import fd_capped
from loadgen import Client, ClientError, progress
from systems import System

__all__ = ["run_storm"]

CONNECT_CONCURRENCY = 200


class _Member:
    """One storm client: its room, what it has received, when it came back."""

    def __init__(self, system: System, n: int, room: str) -> None:
        self.room = room
        self.client = Client(
            system.url, "socketio", email=f"s{n}@bench.io", on_message=self._on_message
        )
        self.seqs: set[int] = set()
        self.join_head = 0
        self.back_at: float | None = None
        self.recovered: bool | None = None
        self.attempts = 0
        self.last_error: str | None = None

    def _on_message(self, client: Client, message: dict[str, Any], offset: str | None) -> None:
        if message["roomId"] == self.room:
            self.seqs.add(message["seq"])

    async def join(self) -> int:
        """Join the room; returns the room's head at the join."""
        reply = await self.client.request("join", {"email": self.client.email, "roomId": self.room})
        if not reply.get("ok"):
            raise ClientError(f"join failed: {reply}")
        history = reply.get("history") or []
        return int(history[-1]["seq"]) if history else 0

    async def start(self) -> None:
        """Connect and join; messages from here on count (a later rejoin does not reset it)."""
        await self.client.open({})
        self.join_head = await self.join()

    async def come_back(self, restart_at: float, deadline: float) -> None:
        """After the close: reconnect with backoff and jitter, recover or rejoin."""
        try:
            async with asyncio.timeout(deadline - time.monotonic()):
                await self.client.closed.wait()
        except TimeoutError:
            return
        delay = 1.0
        old_pid = self.client.pid
        while time.monotonic() < deadline:
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 5.0)
            self.attempts += 1
            auth: dict[str, Any] = {}
            if old_pid is not None:
                auth["pid"] = old_pid
                if self.client.offset is not None:
                    auth["offset"] = self.client.offset
            try:
                reply = await self.client.open(auth, timeout=10)
                self.recovered = old_pid is not None and reply.get("pid") == old_pid
                if not self.recovered:
                    await self.join()
            except Exception as exc:  # refused while the gateway restarts, a timeout...
                self.last_error = f"{type(exc).__name__}: {exc}"[:120]
                await self.client.close()
                continue
            self.back_at = time.monotonic() - restart_at
            return


async def _send_loop(member: _Member, rate: float, stop: asyncio.Event) -> int:
    sent = 0
    while not stop.is_set():
        await asyncio.sleep(1 / rate)
        if member.client.is_open:
            try:
                data = {"roomId": member.room, "text": "storm", "clientMsgId": uuid.uuid4().hex}
                await member.client.emit("send_message", data)
                sent += 1
            except Exception:  # closed under us: the storm is on
                continue
    return sent


async def run_storm(
    system: System, clients: int, *, rate: float = 1.0, room_size: int = 20, limit_s: float = 60
) -> dict[str, Any]:
    """Connect, keep traffic flowing, restart the gateway, measure the way back."""
    run = f"{int(time.time() * 1000) % 10**8}"
    members = [_Member(system, i, f"storm-{run}-{i // room_size}") for i in range(clients)]
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def start(m: _Member) -> None:
        async with gate:
            await m.start()

    progress(f"{system.name}: connecting {clients} Socket.IO clients with recovery")
    await asyncio.gather(*(start(m) for m in members))
    senders = members[::room_size]
    stop = asyncio.Event()
    sending = [asyncio.ensure_future(_send_loop(m, rate, stop)) for m in senders]
    await asyncio.sleep(3)
    progress(f"{system.name}: restarting the gateway (traffic: {rate * len(senders):.0f} msgs/s)")
    restart_at = time.monotonic()
    deadline = restart_at + limit_s
    returns = [asyncio.ensure_future(m.come_back(restart_at, deadline)) for m in members]
    timings = await system.restart_gateway()
    ready_s = time.monotonic() - restart_at
    progress(
        f"{system.name}: gateway stopped in {timings['stop_s']:.1f} s, "
        f"ready again after {ready_s:.1f} s"
    )
    while not all(r.done() for r in returns):
        await asyncio.sleep(1)
        back = sum(1 for m in members if m.back_at is not None)
        progress(f"  {time.monotonic() - restart_at:5.1f} s: {back}/{clients} back")
    await asyncio.sleep(2)  # traffic on the restarted gateway
    stop.set()
    sent = sum(await asyncio.gather(*sending))
    await asyncio.sleep(2)  # let the last messages arrive
    missed: int | None = None
    if system.recovery:
        missed = 0
        for head_of, room_members in _by_room(members).items():
            asker = next((m for m in room_members if m.client.is_open), None)
            if asker is None:
                continue
            reply = await asker.client.request("get_history", {"roomId": head_of, "limit": 1})
            messages = reply.get("messages") or []
            head = messages[-1]["seq"] if messages else 0
            for m in room_members:
                missed += sum(1 for s in range(m.join_head + 1, head + 1) if s not in m.seqs)
    backs = [m.back_at for m in members if m.back_at is not None]
    recovered = [m for m in members if m.recovered]
    await asyncio.gather(*(m.client.close() for m in members))
    all_recovered_s = (
        round(max(m.back_at for m in recovered if m.back_at is not None), 2)
        if len(recovered) == clients
        else None
    )
    return {
        "system": system.name,
        "clients": clients,
        "messages_sent": sent,
        "gateway_stop_s": round(timings["stop_s"], 2),
        "gateway_ready_s": round(ready_s, 2),
        "all_back_s": round(max(backs), 2) if len(backs) == clients else None,
        "all_recovered_s": all_recovered_s,
        "back": len(backs),
        "recovered": len(recovered),
        "not_recovered": clients - len(recovered),
        "messages_missed": missed,
        "recovery_supported": system.recovery,
        "reconnect_attempts": sum(m.attempts for m in members),
        "last_errors": sorted({m.last_error for m in members if m.last_error})[:5],
    }


def _by_room(members: list[_Member]) -> dict[str, list[_Member]]:
    rooms: dict[str, list[_Member]] = {}
    for m in members:
        rooms.setdefault(m.room, []).append(m)
    return rooms


def summary(result: dict[str, Any]) -> str:
    missed = result["messages_missed"]
    return (
        f"{result['system']}: {result['back']}/{result['clients']} back in {result['all_back_s']} s, "
        f"{result['recovered']} recovered (all recovered in {result['all_recovered_s']} s), "
        f"missed {'n/a (no recovery)' if missed is None else missed}, "
        f"gateway stopped in {result['gateway_stop_s']} s, ready after {result['gateway_ready_s']} s"
    )


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--system", choices=SYSTEMS, default="ours")
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=1.0, help="messages/s per room")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    clients = fd_capped(args.clients)
    async with make_system(args.system) as system:
        result = await run_storm(system, clients, rate=args.rate)
    print(summary(result), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(uvloop.run(main()))
