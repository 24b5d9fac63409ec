"""One message's critical path, hop by hop, from the traces of the configuration we ship.

    cd bench && ../.venv/bin/python critical_path.py [--deliveries 8000] [--seconds 20]
        [--keep DIR] [--json FILE]

Starts our system as shipped (bench/systems.py ``OurSystem(shipped=True)``: tracing on with
the parent-based 1% sampler, INFO logs) with its OTLP sink keeping every export, drives one
step of the official socket.io-client (bench/fanout.py ``run_official``: 200 clients in 10
rooms of 20) at ``--deliveries``/s, stops the system (the services flush their spans), then
reads the complete ``send_message`` traces (bench/trace_hops.py) and prints a Markdown
section: each hop's p50 and p90 and its share of the median, with the client-observed
p50/p99 beside them. Other bench scripts call :func:`measure` and :func:`render`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import uvloop
from fanout import run_official
from loadgen import progress
from systems import OurSystem, raise_fd_limit
from trace_hops import ACK_TOTAL, HOPS, analyze

__all__ = ["CLIENTS", "ROOMS", "main", "measure", "render"]

CLIENTS = 200
ROOMS = 10
"""The official client's shape: ``CLIENTS`` in ``ROOMS`` rooms, each message delivered to
every member of its room (``CLIENTS // ROOMS``)."""


async def measure(*, deliveries: int = 8000, seconds: float = 20, keep: Path) -> dict[str, Any]:
    """One step at ``deliveries``/s for ``seconds``; the spans are kept in ``keep`` (created
    if missing; refused if it already holds exports, which would mix runs).

    Returns the step (``deliveries_per_s``: the target, ``rate_per_client``, ``seconds``),
    the client-observed ``client`` figures (``p50_ms``, ``p99_ms``, ``delivered_pct``,
    ``deliveries_per_s``: what arrived) and bench/trace_hops.py ``analyze``'s keys:
    ``spans``, ``kept``, ``sampled_sends``, ``traces`` and ``hops`` (per hop ``p50_ms``,
    ``p90_ms``, ``share``)."""
    _empty_dir(keep)
    rate = deliveries / (CLIENTS * (CLIENTS // ROOMS))
    async with OurSystem(shipped=True, keep_spans=keep) as system:
        step = await run_official(system, rate, seconds, clients=CLIENTS, rooms=ROOMS)
    progress(f"client p50 {step['p50_ms']} ms, p99 {step['p99_ms']} ms; decoding {keep}")
    figures = await asyncio.to_thread(_analyze_dir, keep)
    return {
        "deliveries_per_s": deliveries,
        "rate_per_client": rate,
        "seconds": seconds,
        "client": {
            key: step[key] for key in ("p50_ms", "p99_ms", "delivered_pct", "deliveries_per_s")
        },
        **figures,
    }


def _empty_dir(keep: Path) -> None:
    keep.mkdir(parents=True, exist_ok=True)
    if any(keep.glob("*.pb")):
        raise ValueError(f"{keep} already holds exports: give an empty directory")


def _analyze_dir(keep: Path) -> dict[str, Any]:
    """:func:`trace_hops.analyze` of the exports in ``keep``, in the sink's order."""
    return analyze(path.read_bytes() for path in sorted(keep.glob("*.pb")))


def _ms(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def _share(hop_total: str | None, share: float) -> str:
    if hop_total is None:
        return "100%"
    if math.isnan(share):
        return "n/a"
    return f"{share:.0%}" + (" of the ack" if hop_total == ACK_TOTAL else "")


def render(result: dict[str, Any]) -> str:
    """A Markdown section body: what was measured, the hop table, the client's figures."""
    lines = [
        f"One message's path through our system in the configuration we ship (tracing with "
        f"the parent-based 1% sampler, INFO logs), under {result['deliveries_per_s']:,} "
        f"deliveries/s from the official socket.io-client ({CLIENTS} clients in {ROOMS} rooms "
        f"of {CLIENTS // ROOMS}, {result['seconds']:g} s): each hop from the spans of "
        f"{result['traces']} complete traces (of {result['sampled_sends']} sampled sends; a "
        f"trace is complete when its message led its append batch, its commit and its "
        f"room's publish). A hop's share is its median over the median of its total; "
        f"medians do not add up exactly.",
        "",
        "| hop | p50 ms | p90 ms | share of the median |",
        "|---|---:|---:|---:|",
    ]
    for hop in HOPS:
        figures = result["hops"][hop.key]
        label = f"**{hop.label}**" if hop.total is None else hop.label
        lines.append(
            f"| {label} | {_ms(figures['p50_ms'])} | {_ms(figures['p90_ms'])} "
            f"| {_share(hop.total, figures['share'])} |"
        )
    client = result["client"]
    lines += [
        "",
        f"Client-observed at the same step (send to receipt by each member, official "
        f"client): p50 {client['p50_ms']} ms, p99 {client['p99_ms']} ms "
        f"({client['delivered_pct']}% delivered).",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deliveries", type=int, default=8000, help="per second (8000)")
    parser.add_argument("--seconds", type=float, default=20, help="of sending (20)")
    parser.add_argument("--keep", type=Path, help="where the exports go (a new temp dir)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    raise_fd_limit()
    keep: Path = args.keep or Path(tempfile.mkdtemp(prefix="critical-path-"))
    result = uvloop.run(measure(deliveries=args.deliveries, seconds=args.seconds, keep=keep))
    progress(f"exports kept in {keep}")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
