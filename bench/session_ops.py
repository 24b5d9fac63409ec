"""Benchmark: what joins and heartbeats cost the session service and Redis.

    .venv/bin/python bench/session_ops.py [--joins 20000] [--concurrency 64] [--batch 1000]

Starts its own NATS and Redis (from the PyPI wheels) and one session service, then:

* **joins**: ``--joins`` ``chat.session.join`` requests, ``--concurrency`` in flight, each
  a new session joining one of 1,000 rooms (what a client's first join costs);
* **heartbeats**: every session heartbeated in batches of ``--batch`` ids, as gateways do
  every ``GATEWAY_SESSION_HEARTBEAT_S``.

For each phase: operations/s, Redis commands per operation (from ``INFO commandstats``),
and CPU per operation of the session process and of redis-server. The figures feed the
session sizing in docs/scaling.md. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import nats
import psutil
import redis.asyncio as redis

from chat_common.buspermissions import inbox_prefix
from chat_common.schemas import HeartbeatRequest, JoinRequest, encode
from chat_common.subjects import session_endpoint
from chat_devstack.stack import Stack, StackConfig

ROOMS = 1_000


def _cpu(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


async def _commands(r: redis.Redis) -> int:
    stats = await r.info("commandstats")
    return sum(
        int(v["calls"])
        for k, v in stats.items()
        if k.startswith("cmdstat_") and k not in ("cmdstat_info",)
    )


async def _measure(stack: Stack, r: redis.Redis, ops: int, work: Any, label: str) -> dict[str, Any]:
    session_pid = stack.of_kind("session")[0].pid
    assert stack.redis is not None and stack.redis.process is not None
    redis_pid = stack.redis.process.pid
    assert session_pid is not None and redis_pid is not None
    cmd0, s0, r0 = await _commands(r), _cpu(session_pid), _cpu(redis_pid)
    began = time.perf_counter()
    await work()
    elapsed = time.perf_counter() - began
    cmd1, s1, r1 = await _commands(r), _cpu(session_pid), _cpu(redis_pid)
    result = {
        "phase": label,
        "operations": ops,
        "ops_per_s": round(ops / elapsed, 1),
        "redis_commands_per_op": round((cmd1 - cmd0 - 1) / ops, 2),
        "session_cpu_us_per_op": round((s1 - s0) / ops * 1e6, 1),
        "redis_cpu_us_per_op": round((r1 - r0) / ops * 1e6, 1),
    }
    print(
        f"{label:>22}: {result['ops_per_s']:>9.1f}/s  "
        f"{result['redis_commands_per_op']:>5} Redis cmds/op  "
        f"session {result['session_cpu_us_per_op']:>6} us/op  "
        f"redis {result['redis_cpu_us_per_op']:>6} us/op",
        flush=True,
    )
    return result


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--joins", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--env",
        nargs="*",
        default=[],
        type=lambda kv: tuple(kv.split("=", 1)),
        help="extra KEY=VALUE for the session service (e.g. OTEL_SDK_DISABLED=true)",
    )
    args = parser.parse_args()
    run = uuid.uuid4().hex[:6]
    session_ids = [uuid.uuid4().hex for _ in range(args.joins)]
    with tempfile.TemporaryDirectory(prefix="bench-session-") as tmp:
        config = StackConfig(
            data_dir=Path(tmp), gateways=0, sessions=1, histories=0, extra_env=dict(args.env)
        )
        async with Stack(config) as stack:
            # The gateway's identity: the one NATS lets make these requests.
            nc = await nats.connect(
                stack.nats_url,
                nkeys_seed=str(stack.nats_seed_files["gateway"]),
                inbox_prefix=inbox_prefix("gateway"),
            )
            r = redis.Redis.from_url(stack.redis_url)
            queue: asyncio.Queue[int] = asyncio.Queue()
            for i in range(args.joins):
                queue.put_nowait(i)

            async def joiner() -> None:
                while not queue.empty():
                    i = queue.get_nowait()
                    req = JoinRequest(
                        session_id=session_ids[i],
                        gateway_id="bench-gw",
                        email=f"u{i}@bench.io",
                        room_id=f"bench-{run}-{i % ROOMS}",
                        token_hash="0" * 64,
                        sid=session_ids[i][:16],
                        position=0,
                        conn=session_ids[i],
                    )
                    await nc.request(session_endpoint("join"), encode(req), timeout=30)

            async def joins() -> None:
                await asyncio.gather(*(joiner() for _ in range(args.concurrency)))

            async def heartbeats() -> None:
                for start in range(0, len(session_ids), args.batch):
                    req = HeartbeatRequest(
                        gateway_id="bench-gw", session_ids=session_ids[start : start + args.batch]
                    )
                    await nc.request(session_endpoint("heartbeat"), encode(req), timeout=30)

            results = [
                await _measure(stack, r, args.joins, joins, "join (new session)"),
                await _measure(stack, r, args.joins, heartbeats, "heartbeat (per session)"),
            ]
            await r.aclose()
            await nc.drain()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
