"""Benchmark: appends/s and ack latency of the history service (group commit), through NATS.

    .venv/bin/python bench/history_appends.py [--seconds 10] [--concurrency 1 64 512] [--ha]

Starts its own NATS and Postgres (from the PyPI wheels) and one history service process in
a temporary directory, then, for each concurrency level, runs that many concurrent senders
issuing one-item ``chat.history.append_batch`` requests (each waits for its ack before sending the next)
spread over 64 rooms for the given time. Reports appends/s and ack latency p50/p99/max as
a table and as JSON (``--json FILE``). ``--ha`` runs it on the production topology (a NATS
cluster, and a Postgres primary whose commits wait for a synchronous standby). Nothing here is a test: figures go to
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import msgspec
import nats

from chat_common.buspermissions import inbox_prefix
from chat_common.schemas import AppendBatchRequest, AppendRequest, encode
from chat_common.subjects import history_endpoint
from chat_devstack.stack import Stack, StackConfig


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_level(nc: nats.NATS, concurrency: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    run_id = uuid.uuid4().hex[:6]
    errors = 0

    async def sender(n: int) -> None:
        nonlocal errors
        i = 0
        while time.perf_counter() < deadline:
            req = AppendRequest(
                room_id=f"bench-{run_id}-{n % 64}",
                email=f"s{n}@bench.io",
                text="x" * 64,
                client_msg_id=f"{n}-{i}",
            )
            started = time.perf_counter()
            # One item per request, on the endpoint the gateways use (the only one their
            # identity may call).
            batch = AppendBatchRequest(items=[msgspec.Raw(encode(req))])
            msg = await nc.request(history_endpoint("append_batch"), encode(batch), timeout=10)
            if msg.headers and msg.headers.get("Nats-Service-Error-Code"):
                errors += 1
            else:
                latencies.append(time.perf_counter() - started)
            i += 1

    began = time.perf_counter()
    await asyncio.gather(*(sender(n) for n in range(concurrency)))
    elapsed = time.perf_counter() - began
    return {
        "concurrency": concurrency,
        "appends": len(latencies),
        "errors": errors,
        "appends_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1e3, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1e3, 2),
        "max_ms": round(max(latencies) * 1e3, 2),
        "mean_ms": round(statistics.fmean(latencies) * 1e3, 2),
    }


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 64, 512])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--ha", action="store_true", help="Postgres with a synchronous standby")
    parser.add_argument(
        "--env", nargs="*", default=[], help="extra KEY=VALUE for the history service"
    )
    args = parser.parse_args()
    extra = dict(kv.split("=", 1) for kv in args.env)
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        config = StackConfig(
            data_dir=Path(tmp),
            gateways=0,
            sessions=0,
            histories=1,
            extra_env=extra,
            ha=args.ha,
        )
        async with Stack(config) as stack:
            # The gateway's identity: the one NATS lets make these requests.
            nc = await nats.connect(
                servers=stack.nats_url.split(","),
                nkeys_seed=str(stack.nats_seed_files["gateway"]),
                inbox_prefix=inbox_prefix("gateway"),
            )
            results = []
            for level in args.concurrency:
                result = await run_level(nc, level, args.seconds)
                results.append(result)
                print(
                    f"concurrency {level:>4}: {result['appends_per_s']:>9.1f} appends/s  "
                    f"p50 {result['p50_ms']:>7.2f} ms  p99 {result['p99_ms']:>7.2f} ms  "
                    f"max {result['max_ms']:>7.2f} ms  errors {result['errors']}",
                    flush=True,
                )
            await nc.drain()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
