"""Flame graphs of our Python processes under the official client's load, as shipped.

    .venv/bin/python bench/flames.py --label after            # 8k and 40k deliveries/s
    .venv/bin/python bench/flames.py --label before --seconds 20 --deliveries 8000

For each load (200 official socket.io-clients in 10 rooms of 20, bench/fanout.py
``run_official``), on a freshly started copy of our system in the configuration we ship
(bench/systems.py ``OurSystem(shipped=True)``: tracing exported to a live OTLP receiver, INFO
logs), py-spy samples the gateway, the session and the history service for the steady part
of the step (from the first send to ``--seconds`` later; ``--nonblocking``, 100 Hz, so the
profiled processes are not paused). Writes ``docs/bench/flames/LABEL/PROCESS-Nk.svg`` and
``figures.json`` there (the step's latency and CPU per process, measured while profiling:
read them as the profile's context, not as the headline, which bench/side_by_side.py
measures without a profiler attached).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import uvloop
from fanout import run_official
from loadgen import progress
from systems import OurSystem, raise_fd_limit

ROOT = Path(__file__).resolve().parent.parent
PROFILED = ("gateway", "session", "history")


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("py-spy is missing: run `make setup`")
    return found


async def profile_step(
    deliveries: int, seconds: float, out: Path, *, raw: bool = False
) -> dict[str, Any]:
    """One official-client step at ``deliveries``/s with every Python process profiled."""
    k = deliveries // 1000
    profilers: list[asyncio.subprocess.Process] = []
    async with OurSystem(shipped=True) as system:
        pids = system.cpu_pids()

        async def start_profilers() -> None:
            for name in PROFILED:
                pid = next(pid for proc, pid in pids.items() if proc.startswith(name))
                profilers.append(
                    await asyncio.create_subprocess_exec(
                        _py_spy(),
                        "record",
                        "--pid",
                        str(pid),
                        "--duration",
                        str(int(seconds)),
                        "--nonblocking",
                        "--nolineno",
                        *(["--format", "raw"] if raw else []),
                        "--output",
                        str(out / f"{name}-{k}k.{'txt' if raw else 'svg'}"),
                        stdout=asyncio.subprocess.DEVNULL,
                        stderr=asyncio.subprocess.DEVNULL,
                    )
                )

        step = await run_official(system, deliveries / (200 * 20), seconds, on_go=start_profilers)
        for proc in profilers:
            await proc.wait()
    progress(
        f"{k}k: p50 {step['p50_ms']} ms p99 {step['p99_ms']} ms, "
        f"{step['cpu_us_per_delivery']} µs/delivery, cores by process {step['cpu_cores_by_process']}"
    )
    return step


async def run(deliveries: list[int], seconds: float, out: Path, raw: bool) -> dict[str, Any]:
    return {str(d): await profile_step(d, seconds, out, raw=raw) for d in deliveries}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--label", required=True, help="e.g. before, after")
    parser.add_argument("--deliveries", type=int, nargs="+", default=[8_000, 40_000])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "docs/bench/flames")
    parser.add_argument("--raw", action="store_true", help="collapsed stacks (.txt), not SVGs")
    args = parser.parse_args()
    raise_fd_limit()
    out: Path = args.out / args.label
    out.mkdir(parents=True, exist_ok=True)
    figures = uvloop.run(run(args.deliveries, args.seconds, out, args.raw))
    (out / "figures.json").write_text(json.dumps(figures, indent=2) + "\n")
    progress(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
