"""Benchmark: typing indicators (issue 27, must-show 3).

    .venv/bin/python bench/typing_indicators.py                      # both parts, shipped settings
    .venv/bin/python bench/typing_indicators.py --part latency --rooms 20 --cycles 15
    .venv/bin/python bench/typing_indicators.py --part big --members 10000 --typists 500 --window 15
        [--protocol socketio native] [--env KEY=VALUE ...] [--json FILE]

**latency**: two gateway processes on their own ports (one session, one history, NATS,
Redis, Postgres; tracing off, per-address limits lifted, typing settings as shipped). In
each of ``--rooms`` rooms a typist on the first gateway and a watcher on the second (the
protocols alternate). Each cycle: the typist sends ``typing:true``; the time until the
watcher's ``typing`` frame names it is *shown*; 1.1 s later (past the 1 s pace, as a
person types for longer than that) it sends ``typing:false``; the time until the
watcher's frame is empty is *cleared on stop*. Then every typist sends ``typing:true``
once more and nothing after (its network vanished: no renewal, no stop, no FIN, the
connection left open): the time from that signal to the watcher's empty frame is
*cleared on vanish* (the receivers' expiry, ``GATEWAY_TYPING_TTL_MS`` = 6 s).

**big**: one gateway; ``--members`` clients join one room at `--join-rate` (200) joins/s; then the
gateway's CPU time is measured over three windows of ``--window`` seconds: without
typists, with ``--typists`` of the members typing, and without again. A typist types for
6 s (``typing:true`` at once and 3 s later), stops (``typing:false``), waits 4 s and
starts again, each at its own phase, so the room's set of typists changes all the time
(about 100 starts and stops a second for 500). Every member counts its ``typing`` frames,
their largest size, and the shortest gap between two of them. The typists' cost is the
gateway's CPU per second with typists minus without (the mean of the two windows), in
cores.

Progress goes to stderr, Markdown tables and the targets to stdout, ``--json FILE`` the
raw figures. RLIMIT_NOFILE is raised to the hard limit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import uvloop
from loadgen import Client, percentile, progress
from systems import OUR_ENV, OurSystem, cpu_seconds, raise_fd_limit

from chat_devstack.stack import Stack, StackConfig

__all__ = ["run_big", "run_latency"]

PACE_S = 1.1
"""Between a typist's start and stop: past the 1 s pace, so the stop goes out at once."""
SHOWN_TARGET_MS = CLEARED_TARGET_MS = 100.0
VANISH_TARGET_S = 6.5
FRAME_TARGET_BYTES = 1024
CPU_TARGET_CORES = 0.10


def _ms(seconds: float) -> float:
    return round(seconds * 1e3, 1)


# -- latency across two gateways --------------------------------------------------------------


@dataclass(slots=True)
class _Pair:
    room: str
    typist: Client
    watcher: Client
    email: str
    waiting: tuple[str, float, asyncio.Future[float]] | None = None
    """(what the watcher waits for: "shown" or "cleared", since when, resolved with the delay)."""

    def on_data(self, _client: Client, name: str, data: Any) -> None:
        if name != "typing" or self.waiting is None or data.get("roomId") != self.room:
            return
        want, since, fut = self.waiting
        hit = self.email in data["users"] if want == "shown" else data["count"] == 0
        if hit and not fut.done():
            fut.set_result(time.monotonic() - since)

    def expect(self, want: str) -> asyncio.Future[float]:
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiting = (want, time.monotonic(), fut)
        return fut


async def _signal(pair: _Pair, typing: bool, want: str) -> float:
    fut = pair.expect(want)
    await pair.typist.emit("typing", {"roomId": pair.room, "typing": typing})
    return await asyncio.wait_for(fut, 15)


async def run_latency(
    rooms: int, cycles: int, protocols: list[str], env: dict[str, str]
) -> dict[str, Any]:
    """Part (a): shown / cleared-on-stop / cleared-on-vanish across two gateways."""
    tmp = tempfile.TemporaryDirectory(prefix="bench-typing-")
    stack = Stack(
        StackConfig(data_dir=Path(tmp.name), gateway_port=0, gateways=2, extra_env=OUR_ENV | env)
    )
    shown: list[float] = []
    cleared: list[float] = []
    vanished: list[float] = []
    await stack.start()
    try:
        url_a, url_b = stack.gateway_urls
        tag = int(time.time() * 1000) % 10**8
        pairs: list[_Pair] = []
        for i in range(rooms):
            room, email = f"typing-{tag}-{i}", f"typist{i}@bench.io"
            typist = Client(url_a, protocols[i % len(protocols)], email=email)
            pair = _Pair(room, typist, typist, email)
            pair.watcher = Client(
                url_b,
                protocols[(i + 1) % len(protocols)],
                email=f"w{i}@bench.io",
                on_data=pair.on_data,
            )
            for c in (pair.typist, pair.watcher):
                await c.open({"recovery": False} if c.protocol == "socketio" else None)
                reply = await c.request("join", {"email": c.email, "roomId": room})
                assert reply.get("ok"), reply
            pairs.append(pair)
        progress(f"latency: {rooms} rooms over two gateways, {cycles} cycles each")

        async def cycle(pair: _Pair) -> None:
            await asyncio.sleep(random.random() * PACE_S)  # rooms out of step with each other
            for _ in range(cycles):
                shown.append(await _signal(pair, True, "shown"))
                await asyncio.sleep(PACE_S)
                cleared.append(await _signal(pair, False, "cleared"))
                await asyncio.sleep(PACE_S)

        await asyncio.gather(*(cycle(p) for p in pairs))
        progress(
            f"  shown p99 {_ms(percentile(shown, 0.99))} ms, cleared p99 {_ms(percentile(cleared, 0.99))} ms; vanishing"
        )

        async def vanish(pair: _Pair) -> None:
            await _signal(pair, True, "shown")
            fut = pair.expect("cleared")  # from the last signal, which was just seen
            vanished.append(await asyncio.wait_for(fut, 30) + 0.0)

        await asyncio.gather(*(vanish(p) for p in pairs))
        for p in pairs:
            await p.typist.close()
            await p.watcher.close()
    finally:
        await stack.stop()
        tmp.cleanup()
    return {
        "rooms": rooms,
        "cycles": cycles,
        "protocols": protocols,
        "shown_n": len(shown),
        "shown_p50_ms": _ms(percentile(shown, 0.5)),
        "shown_p99_ms": _ms(percentile(shown, 0.99)),
        "shown_max_ms": _ms(max(shown)),
        "cleared_n": len(cleared),
        "cleared_p50_ms": _ms(percentile(cleared, 0.5)),
        "cleared_p99_ms": _ms(percentile(cleared, 0.99)),
        "cleared_max_ms": _ms(max(cleared)),
        "vanish_n": len(vanished),
        "vanish_min_s": round(min(vanished), 2),
        "vanish_max_s": round(max(vanished), 2),
    }


# -- a room of 10,000 with 500 typists --------------------------------------------------------


@dataclass(slots=True)
class _Frames:
    """What the members count of their typing frames (from the transport's callbacks)."""

    counting: bool = False
    frames: int = 0
    largest: int = 0
    times: dict[int, list[float]] = field(default_factory=dict)
    acked: int = 0
    refused: dict[str, int] = field(default_factory=dict)

    def on_event(self, client: Client, name: str, frame_len: int) -> None:
        if name == "error" and self.counting:
            self.refused["error event"] = self.refused.get("error event", 0) + 1
        if name != "typing" or not self.counting:
            return
        self.frames += 1
        self.largest = max(self.largest, frame_len)
        self.times.setdefault(id(client), []).append(time.monotonic())

    def gaps(self) -> dict[str, Any]:
        """Gaps between a member's frames as received: all of them, and without each
        member's first (read while the load generator started 500 typists)."""
        every = [b - a for t in self.times.values() for a, b in pairwise(t)]
        later = [b - a for t in self.times.values() for a, b in pairwise(t[1:])]
        rates = [len(t) for t in self.times.values()]
        return {
            "gap_min_ms": _ms(min(every)) if every else None,
            "gap_p1_ms": _ms(percentile(every, 0.01)) if every else None,
            "gap_p50_ms": _ms(percentile(every, 0.5)) if every else None,
            "gaps_under_900ms": sum(g < 0.9 for g in every),
            "gaps": len(every),
            "later_gap_min_ms": _ms(min(later)) if later else None,
            "later_gaps_under_900ms": sum(g < 0.9 for g in later),
            "members_with_frames": len(rates),
            "most_frames_one_member": max(rates, default=0),
        }

    def on_ack(self, _client: Client, _ack: int, reply: Any) -> None:
        if isinstance(reply, dict) and reply.get("ok"):
            self.acked += 1
        else:
            code = str(reply.get("error", {}).get("code")) if isinstance(reply, dict) else "?"
            self.refused[code] = self.refused.get(code, 0) + 1


async def _connect(conns: list[Client]) -> None:
    gate = asyncio.Semaphore(100)

    async def one(c: Client) -> None:
        async with gate:
            await c.open({"recovery": False} if c.protocol == "socketio" else None)

    await asyncio.gather(*(one(c) for c in conns))


def _typing(c: Client, room: str, on: bool) -> None:
    """A typing signal without an ack, as the web page sends it."""
    assert c.ws is not None
    data = {"roomId": room, "typing": on}
    if c.protocol == "native":
        c.ws.send(json.dumps({"type": "typing", "data": data}, separators=(",", ":")))
    else:
        c.ws.send("42" + json.dumps(["typing", data], separators=(",", ":")))


async def _join_all(conns: list[Client], room: str, rate: float, tally: _Frames) -> None:
    t0 = time.monotonic()
    for i, c in enumerate(conns):
        if (delay := t0 + i / rate - time.monotonic()) > 0:
            await asyncio.sleep(delay)
        await c.emit("join", {"email": c.email, "roomId": room})
    deadline = time.monotonic() + 60
    while tally.acked < len(conns) and time.monotonic() < deadline:  # noqa: ASYNC110 - our counter
        await asyncio.sleep(0.1)


async def _typist(c: Client, room: str, until: float) -> None:
    """Types 6 s (a renewal at 3 s), stops, waits 4 s, again; at a random phase."""
    await asyncio.sleep(random.random() * 10)
    while time.monotonic() < until:
        for _ in range(2):
            _typing(c, room, True)
            await asyncio.sleep(3)
        _typing(c, room, False)
        await asyncio.sleep(4)


async def run_big(
    members: int,
    typists: int,
    window: float,
    protocols: list[str],
    env: dict[str, str],
    join_rate: float = 200.0,
) -> dict[str, Any]:
    """Part (b): per-member frames and the gateway's CPU with and without typists."""
    tally = _Frames()
    room = f"typing-big-{int(time.time() * 1000) % 10**8}"
    async with OurSystem(extra_env=env) as system:
        conns = [
            Client(
                system.url,
                protocols[i % len(protocols)],
                email=(
                    f"typist-{i}-with-a-longer-name@typing.bench.example.com"
                    if i < typists
                    else f"m{i}@bench.io"
                ),
                on_event=tally.on_event,
                on_ack=tally.on_ack,
            )
            for i in range(members)
        ]
        progress(f"big: connecting {members}")
        await _connect(conns)
        progress(f"  joining at {join_rate:g}/s")
        await _join_all(conns, room, join_rate, tally)
        joined = tally.acked
        progress(f"  {joined} joined; {tally.refused or 'no refusals'}")
        await asyncio.sleep(3)  # presence diffs of the fill settle
        gateway = system.gateway_pid()

        async def measure(what: str) -> float:
            before = cpu_seconds([gateway])
            began = time.monotonic()
            await asyncio.sleep(window)
            cores = (cpu_seconds([gateway]) - before) / (time.monotonic() - began)
            progress(f"  {what}: gateway {cores:.3f} cores")
            return cores

        quiet1 = await measure("without typists")
        tally.refused.clear()
        tally.counting = True
        counting_from = time.monotonic()
        until = counting_from + window + 2
        tasks = [asyncio.ensure_future(_typist(c, room, until)) for c in conns[:typists]]
        await asyncio.sleep(2)  # the phases spread out
        busy = await measure(f"with {typists} typists")
        await asyncio.gather(*tasks)
        await asyncio.sleep(7)  # the last stops, and expiries
        tally.counting = False
        counted_s = time.monotonic() - counting_from
        quiet2 = await measure("without typists, again")
        still = sum(c.is_open for c in conns)
        await asyncio.gather(*(c.close() for c in conns))
    quiet = (quiet1 + quiet2) / 2
    return {
        "members": members,
        "joined": joined,
        **tally.gaps(),
        "counted_s": round(counted_s, 1),
        "typists": typists,
        "window_s": window,
        "protocols": protocols,
        "gateway_cores_without": round(quiet, 3),
        "gateway_cores_without_each": [round(quiet1, 3), round(quiet2, 3)],
        "gateway_cores_with": round(busy, 3),
        "typing_cores": round(busy - quiet, 3),
        "typing_frames": tally.frames,
        "frames_per_member_s": round(tally.frames / max(joined, 1) / counted_s, 3),
        "largest_frame_bytes": tally.largest,
        "typing_refused": tally.refused,
        "still_connected": still,
    }


def _report(lat: dict[str, Any] | None, big: dict[str, Any] | None) -> str:
    rows = []
    targets = ["| target | measured | met |", "| :--- | :--- | :---: |"]
    if lat is not None:
        rows += [
            "| rooms x cycles | shown p50 | p99 | max | cleared on stop p50 | p99 | max | cleared on vanish (from its last signal shown) |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            f"| {lat['rooms']} x {lat['cycles']} | {lat['shown_p50_ms']} ms | {lat['shown_p99_ms']} ms "
            f"| {lat['shown_max_ms']} ms | {lat['cleared_p50_ms']} ms | {lat['cleared_p99_ms']} ms "
            f"| {lat['cleared_max_ms']} ms | {lat['vanish_min_s']} to {lat['vanish_max_s']} s ({lat['vanish_n']}) |",
            "",
        ]
        yes = lambda ok: "yes" if ok else "**no**"  # noqa: E731
        targets += [
            f"| shown to the other gateway's member: p99 ≤ {SHOWN_TARGET_MS:g} ms | {lat['shown_p99_ms']} ms | {yes(lat['shown_p99_ms'] <= SHOWN_TARGET_MS)} |",
            f"| cleared on stop: p99 ≤ {CLEARED_TARGET_MS:g} ms | {lat['cleared_p99_ms']} ms | {yes(lat['cleared_p99_ms'] <= CLEARED_TARGET_MS)} |",
            f"| cleared when the network vanishes: ≤ {VANISH_TARGET_S:g} s | at most {lat['vanish_max_s']} s after the last signal | {yes(lat['vanish_max_s'] <= VANISH_TARGET_S)} |",
        ]
    if big is not None:
        rows += [
            "| members joined | typists | typing frames per member-second | most frames one member got | largest frame "
            "| gap between a member's frames: min / p1 / p50 | without each member's first gap: min | gateway without typists | with | typing's cost | refused | still connected |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :--- | ---: |",
            f"| {big['joined']:,} of {big['members']:,} | {big['typists']} | {big['frames_per_member_s']} "
            f"| {big['most_frames_one_member']} in {big['counted_s']} s | {big['largest_frame_bytes']} B "
            f"| {big['gap_min_ms']} / {big['gap_p1_ms']} / {big['gap_p50_ms']} ms ({big['gaps_under_900ms']} of {big['gaps']} under 900 ms) "
            f"| {big['later_gap_min_ms']} ms ({big['later_gaps_under_900ms']} under 900 ms) "
            f"| {big['gateway_cores_without']} cores | {big['gateway_cores_with']} cores | {big['typing_cores']} cores "
            f"| {big['typing_refused'] or 'none'} | {big['still_connected']:,} |",
        ]
        yes = lambda ok: "yes" if ok else "**no**"  # noqa: E731
        per_s = big["most_frames_one_member"] / big["counted_s"]
        targets += [
            f"| each member at most one typing frame per second | at most {per_s:.2f} per second for any member; shortest gap after the first {big['later_gap_min_ms']} ms | {yes(per_s <= 1 and big['later_gaps_under_900ms'] == 0)} |",
            f"| each frame at most 1 KiB | {big['largest_frame_bytes']} B | {yes(big['largest_frame_bytes'] <= FRAME_TARGET_BYTES)} |",
            f"| the gateway spends at most 10% of a core on typing | {big['typing_cores'] * 100:.1f}% | {yes(big['typing_cores'] <= CPU_TARGET_CORES)} |",
        ]
    return "\n".join(rows) + "\n" + "\n".join(targets)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=["latency", "big", "both"], default="both")
    parser.add_argument("--rooms", type=int, default=20)
    parser.add_argument("--cycles", type=int, default=15)
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--typists", type=int, default=500)
    parser.add_argument("--window", type=float, default=15.0)
    parser.add_argument("--join-rate", type=float, default=200.0)
    parser.add_argument(
        "--protocol", nargs="+", choices=["native", "socketio"], default=["socketio", "native"]
    )
    parser.add_argument("--env", nargs="+", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    raise_fd_limit()
    lat = big = None
    if args.part in ("latency", "both"):
        lat = await run_latency(args.rooms, args.cycles, args.protocol, env)
        progress(json.dumps(lat))
    if args.part in ("big", "both"):
        big = await run_big(
            args.members, args.typists, args.window, args.protocol, env, args.join_rate
        )
        progress(json.dumps(big))
    print(_report(lat, big), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"latency": lat, "big": big}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(uvloop.run(main()))
