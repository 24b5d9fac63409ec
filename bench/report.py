"""Rendering of side-by-side results: the Markdown section, the plots, the machine.

Pure functions of the results dict that ``side_by_side.py`` builds (and writes as JSON),
except :func:`machine` (reads /proc) and :func:`plot` (writes PNGs with matplotlib, Agg).
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path
from typing import Any

__all__ = ["BEGIN", "END", "machine", "plot", "render", "splice"]

BEGIN = "<!-- side-by-side:begin -->"
END = "<!-- side-by-side:end -->"
SECTION = "## Side by side with Node socket.io"
LOADGEN_BOUND = 0.9
"""Load generator CPU (cores) from which a step is bound by the load generator itself."""

_LABELS = {
    ("ours", "native"): "ours, native WebSocket",
    ("ours", "socketio"): "ours, Socket.IO",
    ("node", "socketio"): "Node socket.io + Redis adapter, history in memory",
    (
        "node-pg",
        "socketio",
    ): "Node socket.io + Redis adapter + Postgres INSERT before ack (pool {pool})",
}
DEFAULT_PG_POOL = 20
"""The node-pg pool of results that predate ``node_pg_pool``."""


def _label(results: dict[str, Any], system: str, protocol: str) -> str:
    pool = results.get("node_pg_pool", DEFAULT_PG_POOL)
    return _LABELS.get((system, protocol), f"{system}, {protocol}").format(pool=pool)


def machine() -> dict[str, Any]:
    """CPU model, logical cores, RAM, kernel: what the figures were measured on."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    try:
        match = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
        mem_kib = int(match.group(1)) if match else 0
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "ram_gib": round(mem_kib / 2**20, 1),
        "platform": platform.platform(),
    }


def plot(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """``fanout_p99.png`` (deliveries/s vs p99) and ``fanout_cpu.png`` (vs CPU/delivery)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, key, ylabel, log in (
        ("fanout_p99.png", "p99_ms", "p99 end-to-end latency (ms, log scale)", True),
        ("fanout_cpu.png", "cpu_us_per_delivery", "whole-system CPU per delivery (µs)", False),
    ):
        fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
        for sweep in results.get("fanout", []):
            steps = [s for s in sweep["steps"] if s["deliveries_per_s"] > 0]
            if not steps:
                continue
            ax.plot(
                [s["deliveries_per_s"] for s in steps],
                [max(s[key], 0.1) for s in steps],
                marker="o",
                label=_label(results, sweep["system"], sweep["protocol"]),
            )
        if key == "p99_ms":
            ax.axhline(
                250, color="red", linestyle="--", linewidth=1, label="sustained limit (250 ms)"
            )
            ax.axhline(
                50, color="grey", linestyle=":", linewidth=1, label="target at 40k/s (50 ms)"
            )
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("deliveries/s (achieved)")
        ax.set_ylabel(ylabel)
        ax.set_title("Fan-out: 200 clients in 10 rooms of 20, 64-byte messages")
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
        fig.tight_layout()
        path = out_dir / name
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written


def _n(x: float | None, unit: str = "") -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}{unit}" if abs(x) >= 100 else f"{x:,.1f}{unit}"


def _yes(flag: bool | None) -> str:
    return "-" if flag is None else ("yes" if flag else "**no**")


def _fanout_tables(results: dict[str, Any]) -> list[str]:
    lines = [
        "### Fan-out: maximum sustained rate",
        "",
        "Sustained = 100% delivered and p99 ≤ 250 ms; rates rise until two in a row are not",
        "sustained, then one step halfway between the largest sustained rate and the next one up.",
        "CPU is every process of the system under test (ours: gateway, session, history, NATS,",
        "Redis, Postgres; Node: the node process and Redis, plus Postgres for the Postgres peer),",
        "per delivery.",
        "† the load generator was saturated at that step: the system sustains at least that much.",
        "",
        "| system | max sustained deliveries/s | r per client | p99 there | CPU per delivery there |",
        "| :--- | ---: | ---: | ---: | ---: |",
    ]
    for sweep in results.get("fanout", []):
        best = next(
            (
                s
                for s in sweep["steps"]
                if s["rate_per_client"] == sweep["max_sustained_rate_per_client"]
            ),
            None,
        )
        bound = best is not None and (best.get("loadgen_cpu_cores") or 0) >= LOADGEN_BOUND
        lines.append(
            f"| {_label(results, sweep['system'], sweep['protocol'])} | {_n(sweep['max_sustained_deliveries_per_s'])}{' †' if bound else ''} "
            f"| {sweep['max_sustained_rate_per_client']} | {_n(best['p99_ms'] if best else None, ' ms')} "
            f"| {_n(best['cpu_us_per_delivery'] if best else None, ' µs')} |"
        )
    lines += [
        "",
        "### Fan-out: p99 at fixed rates",
        "",
        "| system | 10k deliveries/s | 20k deliveries/s | 40k deliveries/s |",
        "| :--- | ---: | ---: | ---: |",
    ]
    for sweep in results.get("fanout", []):
        cells = []
        for target in (10_000, 20_000, 40_000):
            step = next((s for s in sweep["steps"] if s["target_deliveries_per_s"] == target), None)
            if step is None:
                cells.append("-")
            else:
                lost = (
                    "" if step["delivered_pct"] >= 100 else f", {step['delivered_pct']}% delivered"
                )
                cells.append(f"{_n(step['p99_ms'], ' ms')}{lost}")
        lines.append(
            f"| {_label(results, sweep['system'], sweep['protocol'])} | " + " | ".join(cells) + " |"
        )
    lines += [
        "",
        "![deliveries/s vs p99](bench/fanout_p99.png)",
        "",
        "![deliveries/s vs CPU per delivery](bench/fanout_cpu.png)",
        "",
        "Every step. *System cores*: CPU of the system under test over the step, in cores;",
        "*load generator*: the same for the load generator's one process. A load generator near",
        f"{LOADGEN_BOUND} cores or more is the bottleneck itself (marked †): that step measures the",
        "load generator, not the system, and the rate a system sustains is at least that.",
        "",
        "| system | r | sent/s | deliveries/s | delivered | p50 | p99 | CPU per delivery | system cores | load generator | sustained |",
        "| :--- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: |",
    ]
    for sweep in results.get("fanout", []):
        for s in sweep["steps"]:
            loadgen = s.get("loadgen_cpu_cores")
            mark = " †" if loadgen is not None and loadgen >= LOADGEN_BOUND else ""
            lines.append(
                f"| {_label(results, s['system'], s['protocol'])} | {s['rate_per_client']} | {_n(s['sent_per_s'])} "
                f"| {_n(s['deliveries_per_s'])} | {s['delivered_pct']}% | {_n(s['p50_ms'], ' ms')} "
                f"| {_n(s['p99_ms'], ' ms')} | {_n(s['cpu_us_per_delivery'], ' µs')} "
                f"| {s['cpu_cores']} | {'-' if loadgen is None else loadgen}{mark} | {_yes(s['sustained'])} |"
            )
    return lines


def _cpu_split_table(results: dict[str, Any]) -> list[str]:
    """Per process CPU per delivery at 10k/20k/40k deliveries/s: what each tier costs."""
    lines = [
        "### Fan-out: where the CPU goes",
        "",
        "CPU per delivery of each process (µs), at the fixed rates. docs/scaling.md sizes each",
        "tier from these figures.",
        "",
        "| system | deliveries/s | " + " | ".join(_PROCESS_ORDER) + " | total |",
        "| :--- | ---: | " + " | ".join("---:" for _ in _PROCESS_ORDER) + " | ---: |",
    ]
    for sweep in results.get("fanout", []):
        for target in (10_000, 20_000, 40_000):
            step = next((s for s in sweep["steps"] if s["target_deliveries_per_s"] == target), None)
            split = (step or {}).get("cpu_us_per_delivery_by_process")
            if not split:
                continue
            cells = [_n(_kind_sum(split, kind)) if _kind_sum(split, kind) else "-"
                     for kind in _PROCESS_ORDER]  # fmt: skip
            lines.append(
                f"| {_label(results, sweep['system'], sweep['protocol'])} | {_n(target)} | "
                + " | ".join(cells)
                + f" | {_n(sum(split.values()))} |"
            )
    return lines


_PROCESS_ORDER = ("gateway", "history", "session", "nats", "redis", "postgres", "node")


def _shape_table(results: dict[str, Any]) -> list[str]:
    """The fixed 100 clients x 20 msgs/s step: one row per system and protocol."""
    lines = [
        "### Fan-out: 100 clients at 20 msgs/s each",
        "",
        "One fixed step of another shape: 100 clients in 5 rooms of 20, each sending 64-byte",
        "messages at 20 msgs/s (2,000 msgs/s, 40,000 deliveries/s). *Senders out of order*: the",
        "senders whose acked messages' seqs (each ack carries its message's seq) do not rise in",
        "the order the messages were sent. *Stored*: rows in Postgres of the step's rooms, counted",
        "after the step (the Postgres peer only). † as above.",
        "",
        "| system | sent/s | deliveries/s | delivered | p50 | p99 | CPU per delivery | system cores "
        "| load generator | senders out of order | acked | stored | errors |",
        "| :--- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :--- |",
    ]
    for s in results.get("shape", []):
        label = _label(results, s["system"], s["protocol"])
        if "error" in s:
            lines.append(f"| {label} | failed: {s['error']} |" + " |" * 11)
            continue
        loadgen = s.get("loadgen_cpu_cores")
        mark = " †" if loadgen is not None and loadgen >= LOADGEN_BOUND else ""
        order = s["senders_out_of_order"]
        stored = "-" if s.get("stored_rows") is None else f"{s['stored_rows']:,}"
        errors = ", ".join(f"{code} {n:,}" for code, n in sorted(s["send_errors"].items()))
        lines.append(
            f"| {label} | {_n(s['sent_per_s'])} | {_n(s['deliveries_per_s'])} "
            f"| {s['delivered_pct']}% | {_n(s['p50_ms'], ' ms')} | {_n(s['p99_ms'], ' ms')} "
            f"| {_n(s['cpu_us_per_delivery'], ' µs')} | {s['cpu_cores']} "
            f"| {'-' if loadgen is None else loadgen}{mark} "
            f"| {f'**{order}**' if order else 0} of {s['senders']} | {s['acked']:,} | {stored} "
            f"| {errors or 'none'} |"
        )
    return lines


def _raw_frame_step(results: dict[str, Any], step: dict[str, Any]) -> dict[str, Any] | None:
    """The Python raw-frame generator's Socket.IO step of the same system, shape and rate."""
    if step.get("clients") == 200:
        for sweep in results.get("fanout", []):
            if (sweep["system"], sweep["protocol"]) == (step["system"], "socketio"):
                return next(
                    (s for s in sweep["steps"] if s["rate_per_client"] == step["rate_per_client"]),
                    None,
                )
        return None
    return next(
        (
            s
            for s in results.get("shape", [])
            if (s["system"], s["protocol"]) == (step["system"], "socketio")
            and s.get("rate_per_client") == step["rate_per_client"]
            and "error" not in s
        ),
        None,
    )


def _official_table(results: dict[str, Any]) -> list[str]:
    """The fan-out steps driven by the official socket.io-client: one row per system x step."""
    steps = results.get("official", [])
    if not steps:
        return []
    version = results.get("versions", {}).get("socket.io-client (official load generator)", "")
    lines = [
        "### Measured with the official socket.io-client",
        "",
        "The same fan-out, over Socket.IO, driven by the official Node client (socket.io-client",
        f"{version}; `bench/node/loadgen.mjs`, one node process) instead of the raw-frame".lstrip(),
        'generator: each client `io(url, {transports: ["websocket"]})` (otherwise default',
        "options; WebSocket only because neither system serves HTTP long-polling, so the default",
        "polling-first handshake cannot connect), `join` with an ack, then `send_message` with",
        "a `clientMsgId` and an ack callback at r msgs/s. Unlike the raw-frame generator, which",
        'CONNECTs with `{"recovery": false}`, it sends no auth, as a default client does:',
        "on ours, connection state recovery stays on, so every `new_message` carries its resume",
        "offset. A delivery still missing 10 s after the last send counts as not delivered;",
        "repeats of a seq at one member are not counted. *CPU per delivery* and *system cores*",
        "are the system's processes only; the node load generator's CPU is the *load generator*",
        "column (†: at or above 0.9 cores, the generator itself was the bottleneck). *Raw-frame",
        "generator*: p99 and CPU per delivery of the same system, shape and r measured with the",
        "Python raw-frame generator in this run (the sweep's steps start at 10k deliveries/s).",
        "",
        "| system | clients x r | deliveries/s | delivered | p50 | p99 | CPU per delivery "
        "| system cores | load generator | raw-frame generator | senders out of order | errors |",
        "| :--- | :--- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :--- |",
    ]
    for s in steps:
        label = _label(results, s["system"], "socketio")
        shape = f"{s.get('clients', 200)} x {s['rate_per_client']:g}"
        if "error" in s:
            lines.append(f"| {label} | {shape} | failed: {s['error']} |" + " |" * 9)
            continue
        loadgen = s.get("loadgen_cpu_cores")
        mark = " †" if loadgen is not None and loadgen >= LOADGEN_BOUND else ""
        raw = _raw_frame_step(results, s)
        raw_cell = (
            "-"
            if raw is None
            else f"{_n(raw['p99_ms'], ' ms')}, {_n(raw['cpu_us_per_delivery'], ' µs')}"
        )
        order = s["senders_out_of_order"]
        errors = ", ".join(f"{code} {n:,}" for code, n in sorted(s["send_errors"].items()))
        lines.append(
            f"| {label} | {shape} | {_n(s['deliveries_per_s'])} | {s['delivered_pct']}% "
            f"| {_n(s['p50_ms'], ' ms')} | {_n(s['p99_ms'], ' ms')} "
            f"| {_n(s['cpu_us_per_delivery'], ' µs')} | {s['cpu_cores']} "
            f"| {'-' if loadgen is None else loadgen}{mark} | {raw_cell} "
            f"| {f'**{order}**' if order else 0} of {s['senders']} | {errors or 'none'} |"
        )
    return lines


def _process_cores(step: dict[str, Any]) -> dict[str, float]:
    """CPU cores of each process over a step (derived from µs per delivery in old results)."""
    cores = step.get("cpu_cores_by_process")
    if cores is not None:
        return dict(cores)
    split = step.get("cpu_us_per_delivery_by_process") or {}
    return {name: us * step["deliveries_per_s"] / 1e6 for name, us in split.items()}


def _cpu_40k_table(results: dict[str, Any]) -> list[str]:
    """Per process CPU at 40k deliveries/s, in both fan-out shapes."""
    lines = [
        "### Per-process CPU at 40k deliveries/s",
        "",
        "CPU of each process over the step in cores, and per delivery in µs, at 40,000",
        "deliveries/s: the sweep's step (200 clients at 10 msgs/s) and the 100 clients at",
        "20 msgs/s step. Processes of one kind are added up; children (Postgres backends) count.",
        "",
        "| system | shape | " + " | ".join(_PROCESS_ORDER) + " | total |",
        "| :--- | :--- | " + " | ".join("---:" for _ in _PROCESS_ORDER) + " | ---: |",
    ]
    rows: list[tuple[int, str, dict[str, Any]]] = []
    for sweep in results.get("fanout", []):
        step = next((s for s in sweep["steps"] if s["target_deliveries_per_s"] == 40_000), None)
        if step is not None:
            rows.append((0, "200 clients at 10 msgs/s", step))
    for step in results.get("shape", []):
        if "error" not in step:
            rows.append((1, "100 clients at 20 msgs/s", step))
    order = {name: i for i, name in enumerate(("ours", "node", "node-pg"))}
    rows.sort(key=lambda row: (order.get(row[2]["system"], 9), row[2]["protocol"], row[0]))
    for _, shape, step in rows:
        cores = _process_cores(step)
        split = step.get("cpu_us_per_delivery_by_process") or {}
        cells = []
        for kind in _PROCESS_ORDER:
            c, us = _kind_sum(cores, kind), _kind_sum(split, kind)
            cells.append(f"{c:.2f} ({_n(us, ' µs')})" if c or us else "-")
        total = f"{sum(cores.values()):.2f} ({_n(sum(split.values()), ' µs')})"
        lines.append(
            f"| {_label(results, step['system'], step['protocol'])} | {shape} | "
            + " | ".join(cells)
            + f" | {total} |"
        )
    return lines


def _kind_sum(split: dict[str, float], kind: str) -> float:
    """CPU of every process of one kind (``gateway-1``, ``gateway-2``... count as gateway)."""
    return sum(v for name, v in split.items() if name.split("-")[0] == kind)


def _idle_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "### Idle connections: memory per joined connection",
        "",
        "RSS of the client-facing process only (our gateway; the node process), stable before",
        "connecting and stable again after every client joined a room of 20 and sat idle.",
        "",
        "| system | clients | still connected | RSS before | RSS after | per connection |",
        "| :--- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in [*results.get("idle", []), *results.get("connections", [])]:
        if "error" in r:
            lines.append(
                f"| {_label(results, r['system'], r['protocol'])} | failed: {r['error']} | | | | |"
            )
            continue
        lines.append(
            f"| {_label(results, r['system'], r['protocol'])} | {r['clients']:,} | {r['still_connected']:,} "
            f"| {r['rss_before_mib']} MiB | {r['rss_after_mib']} MiB | {r['kib_per_connection']} KiB |"
        )
    return lines


def _storm_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "### Reconnect storm after a gateway restart",
        "",
        "Socket.IO clients with connection state recovery, rooms of 20, one sender per room at",
        "1 message/s; SIGTERM the gateway, start it again on the same port. Times are from the",
        "SIGTERM. Missed = per client, every `seq` of its room from its join to the final head",
        "that it never received. The Node peers cannot recover across a restart (the Redis adapter",
        "implements no connection state recovery, and both serve history from memory): their",
        "clients reconnect and rejoin, and only that time is measured.",
        "",
        "| system | clients | gateway stopped | gateway ready | all back | all recovered | not recovered | messages missed |",
        "| :--- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results.get("storm", []):
        if "error" in r:
            lines.append(f"| {r['system']} | failed: {r['error']} | | | | | | |")
            continue
        missed = "n/a" if r["messages_missed"] is None else f"{r['messages_missed']:,}"
        recovered = f"{r['all_recovered_s']} s" if r["all_recovered_s"] is not None else "-"
        back = (
            f"{r['all_back_s']} s"
            if r["all_back_s"] is not None
            else f"{r['back']:,} of {r['clients']:,}"
        )
        lines.append(
            f"| {_label(results, r['system'], 'socketio')} | {r['clients']:,} | {r['gateway_stop_s']} s "
            f"| {r['gateway_ready_s']} s | {back} "
            f"| {recovered} | {r['not_recovered']:,} | {missed} |"
        )
    return lines


def _targets(results: dict[str, Any]) -> list[str]:
    sweeps = {(s["system"], s["protocol"]): s for s in results.get("fanout", [])}
    ours_best = max(
        (s["max_sustained_deliveries_per_s"] for k, s in sweeps.items() if k[0] == "ours"),
        default=None,
    )
    rows = []
    for peer, whose in (("node", "Node's"), ("node-pg", "Node + Postgres's")):
        node = sweeps.get((peer, "socketio"))
        if node is None or ours_best is None:
            continue
        ours_ok = ours_best >= node["max_sustained_deliveries_per_s"]
        node_best = next(
            (
                s
                for s in node["steps"]
                if s["rate_per_client"] == node["max_sustained_rate_per_client"]
            ),
            {},
        )
        bound = (node_best.get("loadgen_cpu_cores") or 0) >= LOADGEN_BOUND
        rows.append(
            (
                f"sustained deliveries/s of ours ≥ {whose}",
                f"{_n(ours_best)} vs {_n(node['max_sustained_deliveries_per_s'])}"
                + (f" ({whose} figure is load-generator bound †)" if bound else ""),
                ours_ok,
            )
        )
    for (system, protocol), sweep in sweeps.items():
        if system != "ours":
            continue
        step = next((s for s in sweep["steps"] if s["target_deliveries_per_s"] == 40_000), None)
        if step is not None:
            rows.append(
                (
                    f"p99 ≤ 50 ms at 40k deliveries/s ({protocol})",
                    f"{_n(step['p99_ms'], ' ms')}, {step['delivered_pct']}% delivered",
                    step["p99_ms"] <= 50 and step["delivered_pct"] >= 100,
                )
            )
    for (system, protocol), sweep in sweeps.items():
        if system != "ours":
            continue
        step = next((s for s in sweep["steps"] if s["target_deliveries_per_s"] == 40_000), None)
        if step is not None:
            rows.append(
                (
                    f"whole-system CPU per delivery ≤ 15 µs at 40k deliveries/s ({protocol})",
                    _n(step["cpu_us_per_delivery"], " µs"),
                    step["cpu_us_per_delivery"] <= 15,
                )
            )
    for step in results.get("official", []):
        if step.get("system") == "ours" and "error" not in step:
            target = step.get("target_deliveries_per_s") or step.get("deliveries_per_s", 0)
            if step.get("clients") == 200 and round(target) in (8_000, 40_000):
                bound = 10 if round(target) == 8_000 else 50
                rows.append(
                    (
                        f"p99 ≤ {bound} ms at {_n(target)} deliveries/s (official socket.io-client)",
                        f"{_n(step['p99_ms'], ' ms')}, {step['delivered_pct']}% delivered",
                        step["p99_ms"] <= bound and step["delivered_pct"] >= 100,
                    )
                )
    for shape in results.get("shape", []):
        if shape.get("system") == "ours" and "error" not in shape:
            rows.append(
                (
                    f"100 clients at 20 msgs/s: p99 ≤ 50 ms, seqs in send order ({shape['protocol']})",
                    f"{_n(shape['p99_ms'], ' ms')}, {shape['senders_out_of_order']} of "
                    f"{shape['senders']} senders out of order",
                    shape["p99_ms"] <= 50 and shape["senders_out_of_order"] == 0,
                )
            )
    for r in results.get("idle", []):
        if r["system"] == "ours" and "error" not in r:
            rows.append(
                (
                    f"≤ 14 KiB per idle joined connection ({r['protocol']})",
                    f"{r['kib_per_connection']} KiB",
                    r["kib_per_connection"] <= 14 and r["all_connected"],
                )
            )
    for r in results.get("connections", []):
        if "error" in r:
            rows.append(("20,000 concurrent connections on one gateway", r["error"], False))
            continue
        capped = r["clients"] < 20_000
        note = ""
        if capped:
            note = (
                f" (RLIMIT_NOFILE {r['fd_limit']:,} caps the load generator)"
                if r.get("requested", 0) >= 20_000
                else f" (only {r['clients']:,} asked for)"
            )
        rows.append(
            (
                "20,000 concurrent connections on one gateway",
                f"{r['still_connected']:,} of {r['clients']:,} connected, "
                f"{r['kib_per_connection']} KiB each{note}",
                None if capped and r["all_connected"] else r["all_connected"],
            )
        )
    if not results.get("connections"):
        rows.append(("20,000 concurrent connections on one gateway", "not run", None))
    for r in results.get("storm", []):
        if r["system"] == "ours" and "error" not in r:
            t = r["all_recovered_s"]
            rows.append(
                (
                    f"reconnect storm: {r['clients']:,} back and recovered within 10 s, nothing missed",
                    f"{t if t is not None else '-'} s, {r['not_recovered']} not recovered, "
                    f"{r['messages_missed']} missed",
                    t is not None
                    and t <= 10
                    and r["messages_missed"] == 0
                    and r["clients"] >= 2000,
                )
            )
    lines = [
        "### Targets (issues 9 and 16)",
        "",
        "| target | measured | met |",
        "| :--- | :--- | :---: |",
    ]
    lines += [f"| {a} | {b} | {_yes(c)} |" for a, b, c in rows]
    return lines


def render(results: dict[str, Any]) -> str:
    """The generated Markdown between the markers (markers included)."""
    m = results["machine"]
    versions = results["versions"]
    lines = [
        BEGIN,
        "",
        f"_Generated by `bench/side_by_side.py` at {results['finished']} (UTC) in "
        f"{results['duration_s'] / 60:.0f} min; do not edit by hand._",
        "",
        "```sh",
        "make setup bench-setup   # the venv, and the Node peer's packages (npm ci)",
        results["command"],
        "```",
        "",
        f"Machine: {m['cpu']}, {m['cores']} logical cores, {m['ram_gib']} GiB RAM, {m['platform']};",
        "the load generator (one uvloop process of raw WebSocket clients, `bench/wsclient.py`) runs",
        "on the same cores, so the system under test gets what it leaves.",
        f"Fan-out steps of {results['seconds']:g} s each.",
        "",
        "The Node peers are `bench/node/server.mjs`: socket.io with `@socket.io/redis-adapter`",
        "(every broadcast goes through Redis pub/sub) and the same events and ack shapes as our",
        "Socket.IO side (`join`, `send_message`, `new_message`, `get_history`), in two setups:",
        "",
        f"* **{_label(results, 'node', 'socketio')}**: stores nothing durably.",
        f"* **{_label(results, 'node-pg', 'socketio')}** (`PG_URL` set):",
        "  every message is INSERTed into Postgres with its per-room seq, in one SQL statement (a",
        "  CTE bumping the room's `last_seq` and inserting the row), before the ack and the",
        "  broadcast. The pool does not serialize a connection's sends; the join history is still",
        "  served from memory.",
        "",
        "Ours stores every message in Postgres before acking and broadcasting it. Every Postgres",
        "here runs with `fsync=on` and `synchronous_commit=on` (chat_devstack).",
        "",
        "| component | version |",
        "| :--- | :--- |",
        *[f"| {k} | {v} |" for k, v in versions.items()],
        "",
        *_targets(results),
        "",
        *_fanout_tables(results),
        "",
        *_shape_table(results),
        "",
        *_official_table(results),
        "",
        *_cpu_split_table(results),
        "",
        *_cpu_40k_table(results),
        "",
        *_idle_table(results),
        "",
        *_storm_table(results),
        "",
        "Raw results: [bench/results.json](bench/results.json).",
        "",
        END,
    ]
    return "\n".join(lines)


def splice(document: str, generated: str) -> str:
    """Replace the text between the markers, or append a new section holding them."""
    start, end = document.find(BEGIN), document.find(END)
    if start != -1 and end > start:
        return document[:start] + generated + document[end + len(END) :]
    return document.rstrip("\n") + f"\n\n{SECTION}\n\n{generated}\n"
