"""Benchmark: what the long-polling relay costs (a request relayed to the session's holder).

    .venv/bin/python bench/polling_relay.py [--sessions 50] [--seconds 10] [--rounds 2]

Starts its own stack in a temporary directory (NATS, Redis, Postgres, one session and one
history service, two gateways A and B on ports of their own; tracing off, the limits of
bench/systems.py lifted), opens ``--sessions`` Engine.IO long-polling sessions on gateway A,
CONNECTs each (``40``) and joins it to a room of its own (so a message reaches only its
sender: the figures are the relay's, not fan-out's). Then every session loops: POST
``42N["send_message",...]``, GET until its ack ``43N[`` arrives (a ping ``2`` is answered by
POSTing ``3``), and again. The loop runs in two modes, alternating, ``--rounds`` phases of
``--seconds`` each (after one discarded warm-up phase of each):

* ``direct``: every request goes to gateway A, which holds every session;
* ``relayed``: every request goes to gateway B, which relays it to A over NATS
  (``chat.gateway.<tag>.poll``) and hands A's answer back.

Reports per mode (stdout, a Markdown table; progress on stderr): round trips/s, p50 and p99
of send -> ack, HTTP requests per round trip, CPU seconds (user + system) of both gateways
and of nats-server per round trip, the load generator's cores, and the relays gateway B
counted (``chat_gateway_relayed_polls_total``: 0 in ``direct``, every request in
``relayed``). Session, history and Postgres do the same work in both modes and are not
counted. The load generator (aiohttp, one uvloop process) runs on the same cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psutil
import uvloop
from loadgen import percentile, progress
from prometheus_client.parser import text_string_to_metric_families
from systems import OUR_ENV, cpu_seconds, raise_fd_limit

from chat_devstack.stack import Stack, StackConfig

__all__ = ["MODES", "Phase", "PollingSession", "run_phase"]

SEP = "\x1e"
MODES = ("direct", "relayed")
CPU_PARTS = ("gateway-1", "gateway-2", "nats")
"""The processes whose CPU is counted: gateway A (the holder), gateway B, nats-server."""


class PollingSession:
    """One Engine.IO long-polling session opened on the holder, driven request by request
    through whichever gateway ``base`` names."""

    def __init__(self, http: aiohttp.ClientSession, number: int) -> None:
        self.http = http
        self.number = number
        self.sid = ""
        self.ack = 1  # 1 is the join's
        self.requests = 0

    @staticmethod
    def _url(base: str) -> str:
        return base.rstrip("/") + "/socket.io/?EIO=4&transport=polling"

    async def _request(self, method: str, base: str, body: str | None = None) -> str:
        url = f"{self._url(base)}&sid={self.sid}"
        data = None if body is None else body.encode()
        async with self.http.request(method, url, data=data) as response:
            text = await response.text()
        self.requests += 1
        if response.status != 200:
            raise RuntimeError(f"session {self.number}: {method} {response.status} {text!r}")
        return text

    async def _until(self, base: str, prefix: str) -> str:
        """GET until a packet starting with ``prefix`` arrives (pings answered); that packet."""
        while True:
            for packet in (await self._request("GET", base)).split(SEP):
                if packet == "2":
                    await self._request("POST", base, "3")
                elif packet.startswith(prefix):
                    return packet

    async def open(self, holder: str, run: str) -> None:
        """Handshake, CONNECT and join a room of its own, all on the holder."""
        async with self.http.get(self._url(holder)) as response:
            body = await response.text()
        if not body.startswith("0{"):
            raise RuntimeError(f"handshake: {response.status} {body!r}")
        self.sid = json.loads(body[1:])["sid"]
        await self._request("POST", holder, "40")
        await self._until(holder, "40")
        join = {"email": f"p{self.number}@bench.io", "roomId": self.room(run)}
        await self._request("POST", holder, "421" + json.dumps(["join", join]))
        reply = await self._until(holder, "431[")
        if not json.loads(reply[3:])[0].get("ok"):
            raise RuntimeError(f"join failed: {reply}")

    def room(self, run: str) -> str:
        return f"poll-{run}-{self.number}"

    async def round_trip(self, base: str, run: str) -> tuple[float, bool]:
        """POST one send_message through ``base``, GET until its ack: (seconds, ok)."""
        self.ack += 1
        send = ["send_message", {"roomId": self.room(run), "text": "x" * 64}]
        began = time.perf_counter()
        await self._request("POST", base, f"42{self.ack}" + json.dumps(send))
        prefix = f"43{self.ack}["
        reply = await self._until(base, prefix)
        return time.perf_counter() - began, bool(json.loads(reply[len(prefix) - 1 :])[0].get("ok"))


@dataclass
class Phase:
    """What one mode measured, summed over its phases."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    requests: int = 0
    elapsed: float = 0.0
    cpu: dict[str, float] = field(default_factory=lambda: dict.fromkeys(CPU_PARTS, 0.0))
    loadgen_cpu: float = 0.0
    relays: float = 0.0


async def _relays(http: aiohttp.ClientSession, stack: Stack) -> float:
    """chat_gateway_relayed_polls_total (every outcome) of gateway B."""
    port = stack.of_kind("gateway")[1].http_port
    async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
        text = await response.text()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "chat_gateway_relayed_polls_total"
    )


async def run_phase(
    stack: Stack,
    http: aiohttp.ClientSession,
    sessions: list[PollingSession],
    base: str,
    run: str,
    seconds: float,
    into: Phase,
) -> None:
    """Every session loops round trips through ``base`` for ``seconds``; add to ``into``."""
    pids = {p.name: p.pid for p in stack.processes if p.name in CPU_PARTS and p.pid is not None}
    own = psutil.Process()
    cpu0 = {name: cpu_seconds([pid]) for name, pid in pids.items()}
    own0, relays0 = sum(own.cpu_times()[:2]), await _relays(http, stack)
    requests0 = sum(s.requests for s in sessions)
    began = time.monotonic()

    async def loop(session: PollingSession) -> None:
        while time.monotonic() - began < seconds:
            latency, ok = await session.round_trip(base, run)
            into.latencies.append(latency)
            into.errors += not ok

    await asyncio.gather(*(loop(s) for s in sessions))
    into.elapsed += time.monotonic() - began
    for name, pid in pids.items():
        into.cpu[name] += cpu_seconds([pid]) - cpu0[name]
    into.loadgen_cpu += sum(own.cpu_times()[:2]) - own0
    into.requests += sum(s.requests for s in sessions) - requests0
    into.relays += await _relays(http, stack) - relays0


def _per_trip(phase: Phase, value: float) -> float:
    return value / max(len(phase.latencies), 1)


def _row(mode: str, phase: Phase) -> str:
    cpu = {name: _per_trip(phase, phase.cpu[name]) * 1e6 for name in CPU_PARTS}
    requests = _per_trip(phase, phase.requests)
    return (
        f"| {mode} | {len(phase.latencies) / phase.elapsed:,.0f} "
        f"| {percentile(phase.latencies, 0.5) * 1e3:.1f} ms "
        f"| {percentile(phase.latencies, 0.99) * 1e3:.1f} ms "
        f"| {requests:.2f} "
        f"| {cpu['gateway-1']:.0f} / {cpu['gateway-2']:.0f} / {cpu['nats']:.0f} µs "
        f"| {sum(cpu.values()):.0f} µs ({sum(cpu.values()) / requests:.0f} µs) "
        f"| {phase.loadgen_cpu / phase.elapsed:.2f} "
        f"| {phase.relays:,.0f} of {phase.requests:,} | {phase.errors} |"
    )


def _report(phases: dict[str, Phase]) -> str:
    direct, relayed = phases["direct"], phases["relayed"]
    lines = [
        "| mode | round trips/s | send→ack p50 | p99 | requests per round trip "
        "| CPU per round trip: gateway A / B / NATS | gateways + NATS per round trip "
        "(per request) | load generator cores | relayed by B | errors |",
        "| :--- | ---: | ---: | ---: | ---: | :--- | ---: | ---: | ---: | ---: |",
        _row("direct", direct),
        _row("relayed", relayed),
    ]
    cpu = [_per_trip(p, sum(p.cpu.values())) for p in (direct, relayed)]
    nats = [_per_trip(p, p.cpu["nats"]) for p in (direct, relayed)]
    relayed_requests = _per_trip(relayed, relayed.requests)
    p50, p99 = (
        percentile(relayed.latencies, q) - percentile(direct.latencies, q) for q in (0.5, 0.99)
    )
    lines.append(
        f"\nrelayed - direct, per round trip: p50 {p50 * 1e3:+.1f} ms, p99 {p99 * 1e3:+.1f} ms, "
        f"gateways + NATS CPU {(cpu[1] - cpu[0]) * 1e6:+.0f} µs ({cpu[1] / cpu[0] - 1:+.0%}); "
        f"per relayed request: gateway B {relayed.cpu['gateway-2'] / relayed.requests * 1e6:.0f} "
        f"µs, NATS {(nats[1] - nats[0]) / relayed_requests * 1e6:+.0f} µs"
    )
    return "\n".join(lines)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10, help="per phase")
    parser.add_argument("--rounds", type=int, default=2, help="phases of each mode")
    parser.add_argument("--warmup", type=float, default=2, help="seconds per mode, discarded")
    args = parser.parse_args()
    raise_fd_limit()
    run = f"{int(time.time() * 1000) % 10**8}"
    with tempfile.TemporaryDirectory(prefix="bench-polling-") as tmp:
        config = StackConfig(data_dir=Path(tmp), gateway_port=0, gateways=2, extra_env=OUR_ENV)
        async with Stack(config) as stack:
            holder, other = stack.gateway_urls
            bases = {"direct": holder, "relayed": other}
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector) as http:
                sessions = [PollingSession(http, n) for n in range(args.sessions)]
                await asyncio.gather(*(s.open(holder, run) for s in sessions))
                progress(f"{args.sessions} sessions open on gateway A ({holder})")
                for mode in MODES:
                    await run_phase(stack, http, sessions, bases[mode], run, args.warmup, Phase())
                phases = {mode: Phase() for mode in MODES}
                for n in range(args.rounds):
                    for mode in MODES:
                        await run_phase(
                            stack, http, sessions, bases[mode], run, args.seconds, phases[mode]
                        )
                        progress(f"round {n + 1} {mode}: {len(phases[mode].latencies)} so far")
    print(_report(phases), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(uvloop.run(main()))
