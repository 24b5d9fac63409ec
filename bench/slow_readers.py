"""Benchmark: slow readers caught up instead of cut (issue 27, must-show 4).

    .venv/bin/python bench/slow_readers.py [--seconds 120] [--readers 200] [--members 20]
        [--rate 10] [--size 3500] [--share 0.1] [--env KEY=VALUE ...] [--json FILE]

Starts our system fresh (NATS, Redis, Postgres, one gateway, one session and one history
service; the limits one load generator would hit lifted, bench/systems.py ``OUR_ENV``;
catch-up settings below, ``--env`` adds or overrides), then three runs, each in a room of
its own, with ``--members`` ordinary members reading at full speed and one sender sending
``--rate`` messages a second of ``--size`` characters (a send timestamp first) for
``--seconds``:

1. **baseline**: no slow reader; the members' end-to-end latency (send → receipt);
2. **one slow reader**: a raw WebSocket client (4 KiB receive buffer) that reads
   ``--share`` of the room's bytes a second (10%: it falls further behind every second);
3. **``--readers`` slow readers** alike (half native, half Socket.IO), on the same gateway.

After each run the slow readers read at full speed until they have every message; each must
have received every seq exactly once, in order (and over Socket.IO the offset of each),
without being closed. Figures: the members' p50/p99 (runs 1 and 2, and 3), the gateway's
RSS growth per slow reader (run 3: its peak while the run lasts over its RSS before the
readers joined), history page requests per reader per second (the gateway's
``chat_gateway_catchup_pages_total``), 4008 cuts (``chat_gateway_slow_consumer_cuts_total``:
none, so no reader's queue ever passed the 1 MiB hard cap, which cuts at once).

Catch-up settings: the shipped ones (hard cap 1 MiB, soft limit 16 KiB, the kernel's send
buffer 16 KiB, a page a second at most unless the reader took the whole last one, 100
messages a page at most): a reader must answer each heartbeat ping within pingTimeout
(20 s) of its sending, so all that sits before the ping (the kernel's buffers, which Linux
otherwise grows towards 4 MiB for a reader that stopped, and the gateway's queue) must be
readable in that time: at 3.6 KB/s, about 70 KB. ``--env K=V`` overrides a setting.
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

import uvloop
from loadgen import Client, latency_stats, progress, sent_at
from systems import OUR_ENV, raise_fd_limit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from chat_devstack.stack import Stack, StackConfig
from tests.support.http import metric
from tests.support.rawws import SlowReader, native_join, sio_join

BENCH_ENV: dict[str, str] = {}
"""The shipped catch-up settings, nothing changed."""


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def _ok(client: Client, event: str, data: dict[str, Any]) -> dict[str, Any]:
    reply = await client.request(event, data)
    if reply.get("ok") is not True:
        raise RuntimeError(f"{event}: {reply}")
    return reply


async def run(stack: Stack, name: str, readers: int, args: argparse.Namespace) -> dict[str, Any]:
    url, room = stack.client_url, f"slow-{name}"
    gateway = stack.of_kind("gateway")[0]
    assert gateway.pid is not None
    metrics = f"http://127.0.0.1:{gateway.http_port}/metrics"
    latencies: list[float] = []
    recording = False

    def on_message(_client: Client, message: dict[str, Any], _offset: str | None) -> None:
        if recording:
            latencies.append(time.time() - sent_at(message["text"]))

    members = [Client(url, "native", email=f"m{i}@example.com", on_message=on_message)
               for i in range(args.members)]  # fmt: skip
    sender = Client(url, "native", email="sender@example.com")
    for client in [*members, sender]:
        await client.open()
        await _ok(client, "join", {"email": client.email, "roomId": room})
    rss_before = _rss_kib(gateway.pid)
    slow: list[SlowReader] = []
    for i in range(readers):
        join = sio_join if i % 2 else native_join
        ws = await join(url, f"slow{i}@example.com", room, rcvbuf=4096)
        slow.append(SlowReader(ws, socketio=bool(i % 2)))
    frame = args.size + 120
    for reader in slow:
        reader.pace(args.share * args.rate * frame)
    pages_before = await metric(metrics, "chat_gateway_catchup_pages_total")
    cuts_before = await metric(metrics, "chat_gateway_slow_consumer_cuts_total")
    progress(f"{name}: {args.members} members, {readers} slow readers, {args.seconds} s")
    peak = {"rss": rss_before, "lagging": 0.0}
    recording = True
    began = time.monotonic()
    sent = 0
    while (elapsed := time.monotonic() - began) < args.seconds:
        text = f"{time.time():020.6f}" + "x" * (args.size - 20)
        await _ok(sender, "send_message", {"roomId": room, "text": text})
        sent += 1
        if sent % args.rate == 0:
            peak["rss"] = max(peak["rss"], _rss_kib(gateway.pid))
            lagging = await metric(metrics, "chat_gateway_lagging_connections")
            peak["lagging"] = max(peak["lagging"], lagging)
            if sent % (args.rate * 10) == 0:
                progress(f"{name}: {sent} sent, {lagging:.0f} lagging, "
                         f"rss {peak['rss'] - rss_before} KiB over")  # fmt: skip
        await asyncio.sleep(max(0.0, sent / args.rate - (time.monotonic() - began)))
    recording = False
    pages = await metric(metrics, "chat_gateway_catchup_pages_total") - pages_before
    behind = [sent - len(r.seqs) for r in slow]
    progress(f"{name}: reading the rest at full speed")
    for reader in slow:
        reader.pace(None)
    deadline = time.monotonic() + 600
    while any(len(r.seqs) < sent and not r.ended.is_set() for r in slow):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    exact = sum(r.seqs == list(range(1, sent + 1)) for r in slow)
    offsets_right = all(
        r.offsets == [f"{room}:{s}" for s in range(1, sent + 1)] for r in slow if r.socketio
    )
    closed = sum(r.ended.is_set() for r in slow)
    codes = sorted({str(r.closed_code) for r in slow if r.ended.is_set()})
    cuts = await metric(metrics, "chat_gateway_slow_consumer_cuts_total") - cuts_before
    for reader in slow:
        await reader.stop()
    for client in [*members, sender]:
        await client.close()
    return {
        "run": name,
        "readers": readers,
        "seconds": round(elapsed, 1),
        "sent": sent,
        "members": latency_stats(latencies),
        "exactly_once_in_order": f"{exact}/{readers}",
        "socketio_offsets_right": offsets_right,
        "closed": closed,
        "close_codes": codes,
        "cuts_4008": cuts,
        "behind_at_end_max": max(behind, default=0),
        "peak_lagging": peak["lagging"],
        "rss_growth_kib_per_reader": round((peak["rss"] - rss_before) / readers, 1)
        if readers
        else None,
        "pages": pages,
        "pages_per_reader_per_s": round(pages / readers / elapsed, 3) if readers else None,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--readers", type=int, default=200)
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--rate", type=int, default=10)
    parser.add_argument("--size", type=int, default=3500)
    parser.add_argument("--share", type=float, default=0.1)
    parser.add_argument("--env", nargs="*", default=[])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    raise_fd_limit()
    extra = BENCH_ENV | dict(item.split("=", 1) for item in args.env)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-slow-") as tmp:
        config = StackConfig(data_dir=Path(tmp), gateway_port=0, extra_env=OUR_ENV | extra)
        async with Stack(config) as stack:
            results.append(await run(stack, "baseline", 0, args))
            results.append(await run(stack, "one", 1, args))
            results.append(await run(stack, "many", args.readers, args))
    print(
        "| run | slow readers | s | sent | members p50 ms | members p99 ms | every message "
        "once, in order | closed | 4008 | RSS KiB per reader | pages per reader per s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        m = r["members"]
        print(f"| {r['run']} | {r['readers']} | {r['seconds']} | {r['sent']} | {m['p50_ms']} | "
              f"{m['p99_ms']} | {r['exactly_once_in_order']} | {r['closed']} | "
              f"{r['cuts_4008']:.0f} | {r['rss_growth_kib_per_reader']} | "
              f"{r['pages_per_reader_per_s']} |")  # fmt: skip
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps({"env": extra, "results": results}, indent=2))


if __name__ == "__main__":
    sys.exit(uvloop.run(main()))
