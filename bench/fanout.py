"""Benchmark: the fan-out workload through the whole system (every message stored).

    .venv/bin/python bench/fanout.py --rate 5 10 20 --seconds 15 [--protocol native|socketio]

Starts its own NATS, Redis, Postgres and one gateway, session and history service (from the
PyPI wheels, in a temporary directory), then for each rate r: 200 clients in 10 rooms of 20,
each sending 64-byte messages at r msgs/s for the given time; every message is delivered to
all 20 members (deliveries/s = 20 x sent/s). Clients speak raw WebSocket frames (native JSON
or Socket.IO v5 framing) from one uvloop process, so the load generator is as light as it
can be. Reports per rate: sent/s, deliveries/s, delivered %, end-to-end latency p50/p99
(send -> receipt by each member), and CPU time of every process of ours plus the servers,
per delivery. "Sustained" = 100% delivered and p99 <= 250 ms. Writes JSON with --json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import psutil
import uvloop
import websockets

from chat_devstack.stack import Stack, StackConfig

ENV = {
    "GATEWAY_AUTH_MODE": "dev",
    "GATEWAY_RATE_PER_S": "100000",
    "GATEWAY_RATE_BURST": "100000",
    "SESSION_USER_RATE_PER_S": "100000",
    "SESSION_USER_RATE_BURST": "100000",
    "GATEWAY_LOG_LEVEL": "WARNING",
    "SESSION_LOG_LEVEL": "WARNING",
    "HISTORY_LOG_LEVEL": "WARNING",
    "OTEL_SDK_DISABLED": "true",
}


class Client:
    def __init__(self, url: str, protocol: str, room: str, n: int) -> None:
        self.url, self.protocol, self.room, self.n = url, protocol, room, n
        self.latencies: list[float] = []
        self.received = 0
        self.errors: dict[str, int] = {}
        self.ws: Any = None
        self._ack = 0

    async def connect(self) -> None:
        if self.protocol == "native":
            self.ws = await websockets.connect(
                self.url.replace("http", "ws") + "ws", max_size=None, compression=None
            )
        else:
            self.ws = await websockets.connect(
                self.url.replace("http", "ws") + "socket.io/?EIO=4&transport=websocket",
                max_size=None,
                compression=None,
            )
            await self.ws.recv()
            await self.ws.send('40{"recovery":false}')
            await self.ws.recv()
        await self._send("join", {"email": f"b{self.n}@bench.io", "roomId": self.room})
        while True:  # until the join ack
            frame = await self.ws.recv()
            if self._is_ack(frame):
                if '"ok":true' not in frame:
                    raise RuntimeError(f"join failed: {frame[:300]}")
                break

    def _is_ack(self, frame: str) -> bool:
        return (
            frame.startswith('{"type":"ack"')
            if self.protocol == "native"
            else frame.startswith("43")
        )

    async def _send(self, event: str, data: dict[str, Any]) -> None:
        self._ack += 1
        if self.protocol == "native":
            await self.ws.send(
                msgspec.json.encode({"type": event, "id": self._ack, "data": data}).decode()
            )
        else:
            await self.ws.send(f"42{self._ack}" + msgspec.json.encode([event, data]).decode())

    async def read(self) -> None:
        decode = msgspec.json.decode
        try:
            async for frame in self.ws:
                if self.protocol == "native":
                    if frame.startswith('{"type":"new_message"'):
                        message = decode(frame)["data"]
                    else:
                        if '"ok":false' in frame:
                            code = decode(frame)["data"]["error"]["code"]
                            self.errors[code] = self.errors.get(code, 0) + 1
                        continue
                else:
                    if frame == "2":
                        await self.ws.send("3")
                        continue
                    if not frame.startswith('42["new_message"'):
                        continue
                    message = decode(frame[2:])[1]
                sent_at = float(message["text"][:20])
                self.latencies.append(time.time() - sent_at)
                self.received += 1
        except websockets.ConnectionClosed:
            pass

    async def send_for(self, rate: float, seconds: float) -> int:
        interval = 1.0 / rate
        start = time.monotonic() + (self.n % 100) / 100 * interval  # spread the senders
        sent = 0
        while True:
            due = start + sent * interval
            if due - start >= seconds:
                return sent
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            text = f"{time.time():020.6f}" + "x" * 44  # 64 bytes, the send time first
            await self._send("send_message", {"roomId": self.room, "text": text})
            sent += 1


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            for p in [proc, *proc.children(recursive=True)]:
                times = p.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def run_rate(
    stack: Stack, protocol: str, rate: float, seconds: float, clients: int, rooms: int
) -> dict[str, Any]:
    url = stack.client_url
    run = f"{int(time.time() * 1000) % 10**8}"
    conns = [Client(url, protocol, f"bench-{run}-{i % rooms}", i) for i in range(clients)]
    await asyncio.gather(*(c.connect() for c in conns))
    readers = [asyncio.ensure_future(c.read()) for c in conns]
    pids = [p.pid for p in stack.processes if p.pid]
    cpu_before = cpu_seconds(pids)
    began = time.monotonic()
    sent = sum(await asyncio.gather(*(c.send_for(rate, seconds) for c in conns)))
    expected = sent * (clients // rooms)
    deadline = time.monotonic() + 10
    while sum(c.received for c in conns) < expected and time.monotonic() < deadline:  # noqa: ASYNC110 - polls its own counters
        await asyncio.sleep(0.05)
    elapsed = time.monotonic() - began
    cpu = cpu_seconds(pids) - cpu_before
    for c in conns:
        await c.ws.close()
    await asyncio.gather(*readers)
    latencies = [x for c in conns for x in c.latencies]
    delivered = sum(c.received for c in conns)
    p99 = percentile(latencies, 0.99)
    return {
        "protocol": protocol,
        "rate_per_client": rate,
        "sent_per_s": round(sent / seconds, 1),
        "deliveries_per_s": round(delivered / seconds, 1),
        "delivered_pct": round(100 * delivered / max(expected, 1), 2),
        "p50_ms": round(percentile(latencies, 0.5) * 1e3, 1),
        "p99_ms": round(p99 * 1e3, 1),
        "cpu_us_per_delivery": round(cpu / max(delivered, 1) * 1e6, 1),
        "sustained": delivered >= expected and p99 <= 0.25,
        "send_errors": {
            k: sum(c.errors.get(k, 0) for c in conns) for k in {k for c in conns for k in c.errors}
        },
        "elapsed_s": round(elapsed, 1),
    }


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, nargs="+", default=[5, 10, 20])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--protocol", choices=["native", "socketio"], default="native")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
        config = StackConfig(data_dir=Path(tmp), gateway_port=0, extra_env=ENV)
        async with Stack(config) as stack:
            for rate in args.rate:
                print(
                    f"rate {rate}/s per client: running {args.seconds:.0f} s ...",
                    file=sys.stderr,
                    flush=True,
                )
                result = await run_rate(
                    stack, args.protocol, rate, args.seconds, args.clients, args.rooms
                )
                results.append(result)
                print(
                    f"{args.protocol:>8} r={rate:>5}: {result['deliveries_per_s']:>9.0f} deliveries/s "
                    f"({result['delivered_pct']}%), p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
                    f"{result['cpu_us_per_delivery']} us CPU/delivery, sustained={result['sustained']} "
                    f"errors={result['send_errors']}",
                    flush=True,
                )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(uvloop.run(main()))
