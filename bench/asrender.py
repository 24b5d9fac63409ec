"""Rendering of bench/as_shipped.py's results: the head section of docs/benchmarks.md.

Pure functions of the results dict (and of the flame graph files it links to).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["BEGIN", "END", "render", "splice"]

BEGIN = "<!-- as-shipped:begin -->"
END = "<!-- as-shipped:end -->"
SECTION = "## As shipped, from outside (issue 28)"
LOADGEN_BOUND = 0.9
"""Load generator cores from which a step is bound by the load generator itself."""
PROCESSES = ("gateway", "history", "session", "nats", "postgres", "redis", "node")
NAMES = {
    "ours": "ours as shipped (1% sampled, exported; INFO logs)",
    "ours-no-tracing": "ours, shipped but tracing off",
    "ours-all-spans": "ours, every trace recorded and exported",
    "ours-quiet": "ours quiet (tracing off, WARNING logs)",
    "node": "Node socket.io + Redis adapter, history in memory",
    "node-pg": "Node socket.io + Redis adapter + Postgres INSERT before ack",
}
FLAMES = Path(__file__).resolve().parent.parent / "docs/bench/flames"
TARGETS = (
    ("8k: p50 ≤ 4 ms", 8_000, "p50_ms", 4.0),
    ("8k: p99 ≤ 10 ms", 8_000, "p99_ms", 10.0),
    ("8k: CPU ≤ 40 µs per delivery", 8_000, "cpu_us_per_delivery", 40.0),
    ("40k: p99 ≤ 30 ms", 40_000, "p99_ms", 30.0),
    ("40k: CPU ≤ 15 µs per delivery", 40_000, "cpu_us_per_delivery", 15.0),
)


def _n(x: float | None, unit: str = "") -> str:
    if x is None or x != x:
        return "-"
    return f"{x:,.0f}{unit}" if abs(x) >= 100 else f"{x:,.1f}{unit}"


def _step(results: dict[str, Any], system: str, target: int) -> dict[str, Any] | None:
    for s in results["steps"]:
        if s["system"] == system and s["target"] == target and "error" not in s:
            return s
    return None


def _max_sustained(results: dict[str, Any], system: str) -> str:
    """The largest step sustained (99.9% delivered, p99 <= 250 ms), for systems that ran a
    sweep (more than the two fixed steps)."""
    if sum(s["system"] == system for s in results["steps"]) <= 2:
        return "- (8k and 40k only)"
    sustained = [
        s for s in results["steps"] if s["system"] == system and "error" not in s and s["sustained"]
    ]
    if not sustained:
        return "-"
    best = max(sustained, key=lambda s: s["target"])
    top = max(s["target"] for s in results["steps"] if s["system"] == system)
    bound = best["loadgen_cpu_cores"] >= LOADGEN_BOUND
    mark = "≥ " if best["target"] == top else ""
    note = f" (load generator {best['loadgen_cpu_cores']} cores{' †' if bound else ''})"
    return f"{mark}{best['target']:,}{note}"


def _cell(step: dict[str, Any] | None) -> str:
    if step is None:
        return "- | - | -"
    return (
        f"{_n(step['p50_ms'], ' ms')} | {_n(step['p99_ms'], ' ms')} "
        f"| {_n(step['cpu_us_per_delivery'], ' µs')}"
    )


def _headline(results: dict[str, Any]) -> list[str]:
    lines = [
        "| system | 8k p50 | 8k p99 | 8k CPU/delivery | 40k p50 | 40k p99 | 40k CPU/delivery "
        "| max sustained (deliveries/s) |",
        "| :--- | ---: | ---: | ---: | ---: | ---: | ---: | :--- |",
    ]
    for system in NAMES:
        if not any(s["system"] == system for s in results["steps"]):
            continue
        lines.append(
            f"| {NAMES[system]} | {_cell(_step(results, system, 8_000))} "
            f"| {_cell(_step(results, system, 40_000))} | {_max_sustained(results, system)} |"
        )
    return lines


def _steps_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| system | target/s | delivered/s | delivered | p50 | p99 | CPU/delivery | system cores "
        "| load generator cores | senders out of order | errors |",
        "| :--- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :--- |",
    ]
    for s in results["steps"]:
        if "error" in s:
            lines.append(f"| {s['system']} | {s['target']:,} | failed: {s['error']} |" + " |" * 8)
            continue
        bound = " †" if s["loadgen_cpu_cores"] >= LOADGEN_BOUND else ""
        errors = ", ".join(f"{k} {v:,}" for k, v in sorted(s["send_errors"].items())) or "none"
        lines.append(
            f"| {s['system']} | {s['target']:,} | {_n(s['deliveries_per_s'])} "
            f"| {s['delivered_pct']}% | {_n(s['p50_ms'], ' ms')} | {_n(s['p99_ms'], ' ms')} "
            f"| {_n(s['cpu_us_per_delivery'], ' µs')} | {s['cpu_cores']} "
            f"| {s['loadgen_cpu_cores']}{bound} | {s['senders_out_of_order']} of {s['senders']} "
            f"| {errors} |"
        )
    return lines


def _targets(results: dict[str, Any]) -> list[str]:
    lines = ["| target | measured (ours as shipped) | met |", "| :--- | ---: | :--- |"]
    for label, target, key, limit in TARGETS:
        step = _step(results, "ours", target)
        value = None if step is None else step[key]
        if value is None:
            lines.append(f"| {label} | - | - |")
            continue
        met = "yes" if value <= limit else f"**no**, {value / limit:.1f} times the target"
        lines.append(f"| {label} | {_n(value)} | {met} |")
    node = _max_sustained(results, "node")
    ours = _max_sustained(results, "ours")
    lines.append(f"| max sustained ≥ in-memory Node's ({node}) | {ours} | see the steps |")
    for target in (8_000, 40_000):
        off, on = _step(results, "ours-no-tracing", target), _step(results, "ours", target)
        if off and on:
            extra = on["cpu_us_per_delivery"] / off["cpu_us_per_delivery"] - 1
            met = "yes" if extra <= 0.10 else f"**no** ({extra:+.0%})"
            lines.append(
                f"| {target // 1000}k: tracing ≤ 10% of the CPU without it | {extra:+.0%} | {met} |"
            )
    return lines


def _tracing(results: dict[str, Any]) -> list[str]:
    lines = [
        "| load | tracing off | shipped sampler (1%) | every trace | p99 off / 1% / every |",
        "| :--- | ---: | ---: | ---: | :--- |",
    ]
    for target in (8_000, 40_000):
        off = _step(results, "ours-no-tracing", target)
        on = _step(results, "ours", target)
        every = _step(results, "ours-all-spans", target)
        if off is None:
            continue
        base = off["cpu_us_per_delivery"]

        def cpu(s: dict[str, Any] | None, base: float = base) -> str:
            if s is None:
                return "-"
            us = s["cpu_us_per_delivery"]
            return f"{_n(us, ' µs')} ({us / base - 1:+.0%})"

        def p99(s: dict[str, Any] | None) -> str:
            return "-" if s is None else _n(s["p99_ms"])

        lines.append(
            f"| {target // 1000}k | {_n(base, ' µs')} | {cpu(on)} | {cpu(every)} "
            f"| {p99(off)} / {p99(on)} / {p99(every)} ms |"
        )
    return lines


def _kind(cores: dict[str, float], kind: str) -> float:
    return sum(v for name, v in cores.items() if name.split("-")[0] == kind)


def _per_process(results: dict[str, Any]) -> list[str]:
    kinds = [
        k
        for k in PROCESSES
        if any(_kind(s.get("cpu_cores_by_process", {}), k) for s in results["steps"])
    ]
    lines = [
        "| system | load | " + " | ".join(kinds) + " | total |",
        "| :--- | :--- | " + " | ".join("---:" for _ in kinds) + " | ---: |",
    ]
    for system in ("ours", "ours-quiet", "node", "node-pg"):
        for target in (8_000, 40_000):
            step = _step(results, system, target)
            if step is None:
                continue
            cores = step["cpu_cores_by_process"]
            cells = " | ".join(f"{_kind(cores, k):.2f}" if _kind(cores, k) else "-" for k in kinds)
            lines.append(f"| {system} | {target // 1000}k | {cells} | {sum(cores.values()):.2f} |")
    return lines


def _flames(results: dict[str, Any]) -> list[str]:
    lines = [
        "| process | 8k before | 8k after | 40k before | 40k after |",
        "| :--- | :--- | :--- | :--- | :--- |",
    ]
    for process in ("gateway", "history", "session"):
        cells = []
        for k in (8, 40):
            for label in ("before", "after"):
                name = f"{label}/{process}-{k}k.svg"
                exists = (FLAMES / name).exists()
                cells.append(f"[svg](bench/flames/{name})" if exists else "-")
        lines.append(f"| {process} | " + " | ".join(cells) + " |")
    context = []
    for label in ("before", "after"):
        figures = results.get("flames") if label == "after" else _before_figures()
        for target, step in sorted((figures or {}).items(), key=lambda kv: int(kv[0])):
            cores = step["cpu_cores_by_process"]
            split = ", ".join(f"{k} {_kind(cores, k):.2f}" for k in PROCESSES if _kind(cores, k))
            context.append(
                f"* {label}, {int(target) // 1000}k (profiler attached): p50 "
                f"{_n(step['p50_ms'], ' ms')}, p99 {_n(step['p99_ms'], ' ms')}, "
                f"{_n(step['cpu_us_per_delivery'], ' µs')} per delivery; cores: {split}."
            )
    return [*lines, "", *context]


def _before_figures() -> dict[str, Any] | None:
    import json

    path = FLAMES / "before" / "figures.json"
    return json.loads(path.read_text()) if path.exists() else None


def render(results: dict[str, Any]) -> str:
    """The generated Markdown between the markers (markers included)."""
    m = results["machine"]
    critical: list[str] = []
    if results.get("critical_path"):
        import critical_path

        critical = [
            "### One message's critical path at 8k",
            "",
            critical_path.render(results["critical_path"]),
            "",
        ]
    lines = [
        BEGIN,
        "",
        f"_Generated by `bench/as_shipped.py` at {results['finished']} (UTC) in "
        f"{results['duration_s'] / 60:.0f} min; do not edit by hand._",
        "",
        "```sh",
        "make setup bench-setup   # the venv, and the Node peers' packages (npm ci)",
        results["command"],
        "```",
        "",
        f"Machine: {m['cpu']}, {m['cores']} logical cores, {m['ram_gib']} GiB RAM. Every step:",
        "the official socket.io-client (one node process on the same two cores), 200 clients",
        "in 10 rooms of 20, 64-byte texts, each send with a `clientMsgId` and an ack callback,",
        f"for {results['seconds']:g} s, on a freshly started system. *CPU/delivery* is every",
        "process of the system (ours: gateway, session, history, NATS, Redis, Postgres with its",
        "backends) per delivery; the load generator's own CPU is not in it. †: the load",
        "generator used ≥ 0.9 cores, so it, not the system, bounded the step.",
        "",
        "Ours as shipped runs the configuration in deploy/: tracing on with the shipped sampler",
        "(parent-based, 1% of traces, errors and spans slower than 100 ms kept), spans exported",
        "over OTLP/HTTP to a live receiver (bench/otlp_sink.py, its own process, standing in for",
        "Jaeger), logs at INFO. Only the limits one load generator would hit are raised",
        "(bench/systems.py `LIMITS_ENV`). Every Postgres runs with `fsync=on` and",
        "`synchronous_commit=on`.",
        "",
        "| component | version |",
        "| :--- | :--- |",
        *[f"| {k} | {v} |" for k, v in results["versions"].items()],
        "",
        "### Headline",
        "",
        *_headline(results),
        "",
        "### Targets",
        "",
        *_targets(results),
        "",
        "### What tracing costs (CPU per delivery, and its share over tracing off)",
        "",
        *_tracing(results),
        "",
        "### CPU per process (cores)",
        "",
        *_per_process(results),
        "",
        "### Flame graphs (py-spy, 100 Hz, our Python processes)",
        "",
        "_Before_: the code at the start of issue 28 (commit f4b29e5, the SDK's sampler: every",
        "trace). _After_: the code that produced this section. Open an SVG to zoom.",
        "",
        *_flames(results),
        "",
        *critical,
        "### Every step",
        "",
        *_steps_table(results),
        "",
        "Raw results: [bench/as_shipped.json](bench/as_shipped.json).",
        "",
        END,
    ]
    return "\n".join(lines)


def splice(document: str, generated: str) -> str:
    """Replace the text between the markers, or insert a new section after the title's
    paragraph."""
    start, end = document.find(BEGIN), document.find(END)
    if start != -1 and end > start:
        return document[:start] + generated + document[end + len(END) :]
    head, sep, rest = document.partition("\n## ")
    return f"{head.rstrip()}\n\n{SECTION}\n\n{generated}\n{sep}{rest}"
