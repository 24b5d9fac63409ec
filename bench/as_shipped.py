"""Benchmark: the configuration we ship, measured from outside, beside the Node peers.

    make setup bench-setup
    .venv/bin/python bench/as_shipped.py                  # ~25 min; rewrites the section
    .venv/bin/python bench/as_shipped.py --from-json docs/bench/as_shipped.json   # re-render

One command for the head of docs/benchmarks.md (between ``<!-- as-shipped:begin -->`` and
``<!-- as-shipped:end -->``). Every step is driven by the official socket.io-client
(bench/node/loadgen.mjs: 200 clients in 10 rooms of 20, 64-byte texts, a ``clientMsgId`` and
an ack callback per send; bench/fanout.py ``run_official``), on a freshly started system:

* **the systems**: ours as shipped (``ours``: deploy/'s tracing, the 1% parent-based sampler
  exporting to a live OTLP receiver, INFO logs; only the limits one load generator would
  hit are raised), ours with tracing off (``ours-no-tracing``: what tracing costs is the
  difference), ours recording every trace (``ours-all-spans``: the SDK's default sampler),
  ours quiet (``ours-quiet``: tracing off, WARNING logs), and the two Node peers (socket.io
  + Redis adapter, history in memory; the same storing each message in Postgres first);
* **the steps**: 8k and 40k deliveries/s for every system, and 20k, 60k and 80k for ours
  and the Node peers (the largest step each sustains: 99.9% delivered, p99 <= 250 ms);
* **the flame graphs** of our Python processes at 8k and 40k (bench/flames.py, profiled in
  a run of their own), beside the ones of the code before issue 28;
* **one message's critical path** at 8k from the spans the shipped sampler recorded
  (bench/critical_path.py).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import asrender
import report
import uvloop
from fanout import make_system, run_official
from loadgen import progress
from systems import raise_fd_limit, versions

ROOT = Path(__file__).resolve().parent.parent
EVERY = (8_000, 40_000)
SWEEP = (8_000, 20_000, 40_000, 60_000, 80_000)
SYSTEMS: dict[str, tuple[int, ...]] = {
    "ours": SWEEP,
    "ours-no-tracing": EVERY,
    "ours-all-spans": EVERY,
    "ours-quiet": EVERY,
    "node": SWEEP,
    "node-pg": SWEEP,
}
"""Each system and the steps (deliveries/s) it runs."""


async def _step(name: str, deliveries: int, seconds: float) -> dict[str, Any]:
    progress(f"{name}: {deliveries:,} deliveries/s")
    try:
        async with make_system(name) as system:
            step = await run_official(system, deliveries / (200 * 20), seconds)
    except Exception as exc:
        traceback.print_exc()
        return {"system": name, "target": deliveries, "error": f"{type(exc).__name__}: {exc}"}
    progress(
        f"{name} {deliveries:,}: p50 {step['p50_ms']} ms p99 {step['p99_ms']} ms "
        f"{step['cpu_us_per_delivery']} µs/delivery {step['delivered_pct']}% delivered"
    )
    return step | {"target": deliveries}


async def run_all(args: argparse.Namespace) -> dict[str, Any]:
    began = time.monotonic()
    results: dict[str, Any] = {
        "command": args.command,
        "machine": report.machine(),
        "versions": versions(),
        "seconds": args.seconds,
        "steps": [],
    }
    for name, steps in SYSTEMS.items():
        if name in args.systems:
            for deliveries in args.steps or steps:
                results["steps"].append(await _step(name, deliveries, args.seconds))
    if "flames" in args.parts:
        import flames

        out = args.flames / "after"
        out.mkdir(parents=True, exist_ok=True)
        results["flames"] = {str(d): await flames.profile_step(d, args.seconds, out) for d in EVERY}
    if "critical-path" in args.parts:
        import critical_path

        with tempfile.TemporaryDirectory(prefix="bench-spans-") as keep:
            results["critical_path"] = await critical_path.measure(
                deliveries=8_000, seconds=args.seconds, keep=Path(keep)
            )
    results["finished"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    results["duration_s"] = round(time.monotonic() - began)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=15, help="per step (default 15)")
    parser.add_argument("--steps", type=int, nargs="+", help="deliveries/s (default: SYSTEMS)")
    parser.add_argument("--systems", nargs="+", choices=list(SYSTEMS), default=list(SYSTEMS))
    parser.add_argument(
        "--parts", nargs="*", choices=["flames", "critical-path"],
        default=["flames", "critical-path"],
    )  # fmt: skip
    parser.add_argument("--json", type=Path, default=ROOT / "docs/bench/as_shipped.json")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs/benchmarks.md")
    parser.add_argument("--flames", type=Path, default=ROOT / "docs/bench/flames")
    parser.add_argument("--from-json", type=Path, help="measure nothing: render this file")
    args = parser.parse_args()
    args.command = ".venv/bin/python " + shlex.join(["bench/as_shipped.py", *sys.argv[1:]])
    if args.from_json is not None:
        results = json.loads(args.from_json.read_text())
    else:
        raise_fd_limit()
        results = uvloop.run(run_all(args))
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    document = args.docs.read_text()
    args.docs.write_text(asrender.splice(document, asrender.render(results)))
    progress(f"wrote {args.json} and {args.docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
