"""Benchmark: our system and two Node socket.io + Redis adapter peers, side by side, in one run.

    .venv/bin/python bench/side_by_side.py            # full run, rewrites docs (~15 min)
    .venv/bin/python bench/side_by_side.py --quick    # smoke run into bench/results/quick/

The systems: ours, ``node`` (bench/node/server.mjs, history in memory) and ``node-pg`` (the same
server INSERTing every message into Postgres before its ack, ``--pg-pool`` connections).
For each system, on a freshly started copy each time: the fan-out sweep (ours over the native
and the Socket.IO protocol, Node over Socket.IO) with p99 at 10k, 20k and 40k deliveries/s,
one fixed fan-out step of another shape (``shape100x20``: 100 clients at 20 msgs/s each in
rooms of 20, 40k deliveries/s, each sender's ack order checked), the same fan-out measured
with the official socket.io-client as load generator (``official``: bench/node/loadgen.mjs at
8k, 20k and 40k deliveries/s and the 100x20 shape, over Socket.IO), memory per idle joined
connection (2,000 clients), 20,000 connections on one gateway (ours; the load generator's
RLIMIT_NOFILE caps it), and the reconnect storm after a gateway restart. Then it
writes the raw results (``results.json``), the plots (``fanout_p99.png``: deliveries/s vs
p99; ``fanout_cpu.png``: vs CPU per delivery) and the generated section of
docs/benchmarks.md (between ``<!-- side-by-side:begin -->`` and ``<!-- side-by-side:end -->``;
the hand-written sections are kept). Needs ``make bench-setup`` (the Node peer's packages).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import report
import uvloop
from fanout import SHAPE, SWEEP_RATES, SYSTEMS, run_official, run_shape, sweep
from idle import fd_capped, run_idle
from loadgen import progress
from storm import run_storm, summary
from systems import DEFAULT_PG_POOL, NodePeer, OurSystem, System, raise_fd_limit, versions

__all__ = ["run_all"]

ROOT = Path(__file__).resolve().parent.parent
QUICK_RATES = (2.5, 5, 10)
WORKLOADS = ["fanout", "shape100x20", "official", "idle", "connections", "storm"]
OFFICIAL_DELIVERIES = (8_000, 20_000, 40_000)
"""Steps of the ``official`` workload, in deliveries/s (200 clients in rooms of 20: r = 2, 5
and 10 msgs/s per client)."""


async def _guarded(
    what: str, base: dict[str, Any], body: Callable[[], Awaitable[dict[str, Any]]]
) -> dict[str, Any]:
    """Run one workload; a failure is recorded in the results, the run goes on."""
    try:
        return await body()
    except Exception as exc:
        progress(f"{what} failed: {exc!r}")
        traceback.print_exc()
        return base | {"error": f"{type(exc).__name__}: {exc}"[:200]}


async def _official_steps(name: str, system: System, seconds: float) -> list[dict[str, Any]]:
    """The official socket.io-client's steps on one system: 8k, 20k, 40k and the 100x20 shape."""
    steps = []
    shapes = [(d / (200 * 20), 200, 10) for d in OFFICIAL_DELIVERIES]
    shapes.append((SHAPE["rate_per_client"], SHAPE["clients"], SHAPE["rooms"]))
    for rate, clients, rooms in shapes:
        what = f"{name} official client, {clients} clients at r={rate:g}"
        progress(what)
        outcome = await _guarded(
            what,
            {"system": name, "protocol": "socketio", "clients": clients, "rooms": rooms}
            | {"rate_per_client": rate},
            lambda r=rate, c=clients, n=rooms: run_official(system, r, seconds, clients=c, rooms=n),
        )
        if "error" not in outcome:
            progress(_official_line(outcome))
        steps.append(outcome)
    return steps


def _official_line(s: dict[str, Any]) -> str:
    return (
        f"{s['system']:>7} official {s['clients']} clients r={s['rate_per_client']:>5}: "
        f"{s['deliveries_per_s']:>9,.0f}/s {s['delivered_pct']:>6}% p50 {s['p50_ms']:>8} ms "
        f"p99 {s['p99_ms']:>8} ms {s['cpu_us_per_delivery']:>6} µs/delivery, "
        f"load generator {s['loadgen_cpu_cores']} cores, errors {s['send_errors']}, "
        f"{s['senders_out_of_order']}/{s['senders']} senders out of order"
    )


async def run_all(args: argparse.Namespace) -> dict[str, Any]:
    """Every workload for every system; returns the results dict that report.py renders."""
    results: dict[str, Any] = {
        "command": args.command,
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "seconds": args.seconds,
        "machine": report.machine(),
        "versions": versions(),
        "node_pg_pool": args.pg_pool,
        "fanout": [],
        "shape": [],
        "official": [],
        "idle": [],
        "connections": [],
        "storm": [],
    }
    began = time.monotonic()
    factories: list[tuple[str, Callable[[], System]]] = [
        ("ours", OurSystem),
        ("node", NodePeer),
        ("node-pg", lambda: NodePeer(durable=True, pg_pool=args.pg_pool)),
    ]
    for name, factory in factories:
        if name not in args.systems:
            continue
        if "fanout" in args.workloads:
            async with factory() as system:
                for protocol in system.protocols:
                    outcome = await _guarded(
                        f"{name}/{protocol} fan-out",
                        {"system": name, "protocol": protocol, "steps": []},
                        lambda s=system, p=protocol: sweep(
                            s, p, seconds=args.seconds, rates=args.rates, refine=not args.quick
                        ),
                    )
                    outcome.setdefault("max_sustained_deliveries_per_s", 0)
                    outcome.setdefault("max_sustained_rate_per_client", 0)
                    results["fanout"].append(outcome)
        if "shape100x20" in args.workloads:
            async with factory() as system:
                for protocol in system.protocols:
                    outcome = await _guarded(
                        f"{name}/{protocol} shape 100x20",
                        {"system": name, "protocol": protocol, "shape": "100x20"},
                        lambda s=system, p=protocol: run_shape(s, p, seconds=args.seconds),
                    )
                    results["shape"].append(outcome)
        if "official" in args.workloads:
            async with factory() as system:
                results["official"] += await _official_steps(name, system, args.seconds)
        if "idle" in args.workloads:
            protocols = ("socketio", "native") if name == "ours" else ("socketio",)
            for protocol in protocols:
                async with factory() as system:
                    outcome = await _guarded(
                        f"{name}/{protocol} idle",
                        {"system": name, "protocol": protocol, "clients": args.idle_clients},
                        lambda s=system, p=protocol: run_idle(s, p, args.idle_clients),
                    )
                    results["idle"].append(outcome)
                    progress(f"idle: {outcome}")
        if "connections" in args.workloads and name == "ours" and args.max_connections:
            async with factory() as system:
                outcome = await _guarded(
                    f"{name} {args.max_connections} connections",
                    {"system": name, "protocol": "socketio", "clients": args.max_connections},
                    lambda s=system: run_idle(s, "socketio", args.max_connections),
                )
                extra = {"fd_limit": args.fd_limit, "requested": args.max_connections_requested}
                results["connections"].append(outcome | extra)
                progress(f"connections: {outcome}")
        if "storm" in args.workloads:
            async with factory() as system:
                outcome = await _guarded(
                    f"{name} storm",
                    {"system": name, "clients": args.storm_clients},
                    lambda s=system: run_storm(s, args.storm_clients),
                )
                results["storm"].append(outcome)
                if "error" not in outcome:
                    progress(summary(outcome))
    results["finished"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    results["duration_s"] = round(time.monotonic() - began)
    return results


def _print_table(results: dict[str, Any]) -> None:
    for sweep_result in results["fanout"]:
        print(
            f"{sweep_result['system']:>7}/{sweep_result['protocol']:<8} max sustained "
            f"{sweep_result['max_sustained_deliveries_per_s']:>9,.0f} deliveries/s"
        )
        for s in sweep_result["steps"]:
            print(
                f"      r={s['rate_per_client']:>5} {s['deliveries_per_s']:>9,.0f}/s "
                f"{s['delivered_pct']:>6}% p50 {s['p50_ms']:>8} ms p99 {s['p99_ms']:>8} ms "
                f"{s['cpu_us_per_delivery']:>6} µs/delivery {'ok' if s['sustained'] else 'NOT sustained'}"
            )
    for s in results.get("shape", []):
        head = f"{s['system']:>7}/{s['protocol']:<8} 100 clients x 20 msgs/s:"
        if "error" in s:
            print(f"{head} {s['error']}")
            continue
        print(
            f"{head} {s['deliveries_per_s']:>9,.0f}/s {s['delivered_pct']:>6}% "
            f"p50 {s['p50_ms']:>8} ms p99 {s['p99_ms']:>8} ms "
            f"{s['cpu_us_per_delivery']:>6} µs/delivery, "
            f"{s['senders_out_of_order']}/{s['senders']} senders out of order, "
            f"{s['acked']} acked, {s['stored_rows'] if s['stored_rows'] is not None else '-'} stored"
        )
    for s in results.get("official", []):
        if "error" in s:
            print(f"{s['system']:>7} official r={s['rate_per_client']}: {s['error']}")
        else:
            print(_official_line(s))
    for r in results["idle"]:
        if "error" in r:
            print(f"{r['system']:>7}/{r['protocol']:<8} idle: {r['error']}")
        else:
            print(
                f"{r['system']:>7}/{r['protocol']:<8} idle: {r['still_connected']}/{r['clients']} connected, "
                f"{r['kib_per_connection']} KiB per connection"
            )
    for r in results["connections"]:
        if "error" not in r:
            print(f"{r['system']:>7} connections: {r['still_connected']}/{r['clients']} connected")
    for r in results["storm"]:
        print(f"storm {r['error']}" if "error" in r else f"storm {summary(r)}")
    sys.stdout.flush()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run (~3 min)")
    parser.add_argument("--seconds", type=float, help="per fan-out step (default 15; quick 3)")
    parser.add_argument("--idle-clients", type=int, help="default 2000 (quick 200); up to 20000")
    parser.add_argument(
        "--max-connections",
        type=int,
        help="idle clients on one gateway, ours only (default 20000, capped by RLIMIT_NOFILE; "
        "quick and 0: skipped)",
    )
    parser.add_argument("--storm-clients", type=int, help="default 2000 (quick 200)")
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument(
        "--pg-pool",
        type=int,
        default=DEFAULT_PG_POOL,
        help=f"Postgres connections of the node-pg peer (default {DEFAULT_PG_POOL})",
    )
    parser.add_argument(
        "--workloads",
        nargs="+",
        choices=WORKLOADS,
        default=WORKLOADS,
    )
    parser.add_argument(
        "--out", type=Path, help="JSON and PNGs (default docs/bench; quick bench/results/quick)"
    )
    parser.add_argument("--docs", type=Path, help="Markdown to update (default docs/benchmarks.md)")
    parser.add_argument(
        "--from-json", type=Path, help="measure nothing: render the plots and docs from this file"
    )
    args = parser.parse_args()
    args.command = ".venv/bin/python " + shlex.join(
        [
            str(Path(sys.argv[0]).resolve().relative_to(ROOT))
            if Path(sys.argv[0]).exists()
            else sys.argv[0],
            *sys.argv[1:],
        ]
    )
    args.seconds = args.seconds or (3 if args.quick else 15)
    args.idle_clients = fd_capped(args.idle_clients or (200 if args.quick else 2000))
    args.fd_limit = raise_fd_limit()
    args.max_connections_requested = (
        args.max_connections if args.max_connections is not None else (0 if args.quick else 20_000)
    )
    args.max_connections = fd_capped(args.max_connections_requested)
    args.storm_clients = fd_capped(args.storm_clients or (200 if args.quick else 2000))
    args.rates = QUICK_RATES if args.quick else SWEEP_RATES
    out: Path = args.out or (ROOT / "bench/results/quick" if args.quick else ROOT / "docs/bench")
    docs: Path = args.docs or (out / "benchmarks.md" if args.quick else ROOT / "docs/benchmarks.md")

    if args.from_json is not None:
        results = json.loads(args.from_json.read_text())
    else:
        results = uvloop.run(run_all(args))
    _print_table(results)
    out.mkdir(parents=True, exist_ok=True)
    if args.from_json is None or args.from_json.resolve() != (out / "results.json").resolve():
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    report.plot(results, out)
    document = docs.read_text() if docs.exists() else "# Benchmarks\n"
    docs.write_text(report.splice(document, report.render(results)))
    progress(f"wrote {out / 'results.json'}, the plots in {out}, and {docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
