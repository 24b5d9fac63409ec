"""Figures of the gateway's shape (``chat_gateway``), measured alike before and after a change.

    .venv/bin/python scripts/house_metrics.py                     # every figure (runs tests/unit twice)
    .venv/bin/python scripts/house_metrics.py --skip-tests        # the static figures only
    .venv/bin/python scripts/house_metrics.py --loop chat_gateway.connection.loop:_SocketIOPump \\
        --scenario 'tests/unit/test_x.py::test_join_send_leave_resume'

It prints the details, then a Markdown table (one row per figure) with the command and the
commit it measured. What each figure is and how it is measured:

* **floors / longest chain**: the import graph of chat_gateway's own modules, read from the
  AST of every ``.py`` file. Every ``import`` and ``from ... import`` of a chat_gateway module
  counts, wherever it stands (inside functions, under ``if TYPE_CHECKING:``); relative imports
  are resolved; ``from pkg import name`` is an edge to ``pkg.name`` when that is a module,
  else to ``pkg``. Package ``__init__`` modules holding nothing but a docstring are not
  nodes. Floors = edges on the longest path; chain = modules on it. A cycle is printed (then
  the longest *simple* path is searched exhaustively). Dynamic imports are not seen.
* **forwarding branches**: in the module that defines the long-polling class (``PollingConn``
  before the rebuild, ``PollingCarrier`` after), the lines containing
  ``if self._ws is not None`` (what ``git grep -c`` counts); and, more generally, the methods
  of that class whose first statement (after a docstring) forwards to another
  carrier: an ``if self.X is not None:`` or a ``... if self.X is not None else ...`` whose
  branch uses ``self.X.<something>``, for any attribute X.
* **largest class**: ``end_lineno - lineno + 1`` of every class (nested ones included) in
  chat_gateway, top 5; and the classes outside ``chat_gateway.edge`` with 20 or more methods
  (``def``/``async def`` directly in the class body; a property and its setter are two).
* **loop lines**: for each ``--loop module:qualname`` (by default what pumps one connection,
  in whichever of ``transport`` or ``connection.loop`` exists), the lines of that definition
  (``def`` line to its last line); and the same plus the module-private functions and
  classes (``_name`` at module level) it uses, followed transitively, which are the rest of
  what pumps one connection in that module.
* **in-process coverage**: statements of chat_gateway executed by
  ``coverage run --source=chat_gateway -m pytest tests/unit -q -p no:cacheprovider``
  (statement coverage, no branches; subprocesses are not measured), with the 15 modules
  missing most lines. Coverage slows the tests down, so the suite's time is measured apart:
* **make test-unit time**: wall time of a plain ``python -m pytest tests/unit -q -p
  no:cacheprovider`` (what ``make test-unit`` runs), with pytest's own summary line.
* **scenario time**: ``--scenario NODEID`` runs that test alone with ``--durations=0
  --durations-min=0`` and prints the durations pytest reports (call; setup+call+teardown).
"""

from __future__ import annotations

import argparse
import ast
import graphlib
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "services" / "gateway" / "src"
PACKAGE = "chat_gateway"
DEFAULT_LOOPS = {
    "chat_gateway.transport": [
        "chat_gateway.transport:serve_socketio",
        "chat_gateway.transport:serve_native",
    ],
    "chat_gateway.connection.loop": [
        "chat_gateway.connection.loop:_SocketIOPump",
        "chat_gateway.connection.loop:Connections.native",
        "chat_gateway.connection.loop:Connections._run",
    ],
}
"""What pumps one connection, by the module that holds it (before and after the rebuild)."""
POLLING_CLASSES = ("PollingConn", "PollingCarrier")
"""The long-polling session's class, by its name before and after the rebuild."""
PYTEST = ["-m", "pytest", "tests/unit", "-q", "-p", "no:cacheprovider"]


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    tree: ast.Module
    is_package: bool

    @property
    def short(self) -> str:
        return self.name.removeprefix(PACKAGE + ".")

    @property
    def has_code(self) -> bool:
        body = self.tree.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]  # the docstring
        return bool(body) or not self.is_package


def load_modules() -> dict[str, Module]:
    modules = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        modules[name] = Module(name, path, ast.parse(path.read_text(), str(path)), is_package)
    return modules


# -- the import graph ----------------------------------------------------------------------


def imported(module: Module, modules: dict[str, Module]) -> set[str]:
    """The chat_gateway modules ``module`` imports anywhere in its body."""
    found: set[str] = set()
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.name.split(".")
                package = package[: len(package) - node.level + module.is_package]
                base = ".".join(package + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else base)
    nodes = {name for name, m in modules.items() if m.has_code}
    return (found & nodes) - {module.name}


def longest_chain(graph: dict[str, set[str]]) -> tuple[list[str], list[str]]:
    """The longest path (its modules) and a cycle, if there is one (else ``[]``)."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
        cycle: list[str] = []
    except graphlib.CycleError as exc:
        cycle = list(exc.args[1])
    memo: dict[str, list[str]] | None = None if cycle else {}

    def walk(node: str, seen: frozenset[str]) -> list[str]:
        if memo is not None and node in memo:
            return memo[node]
        best = [node]
        for nxt in sorted(graph[node] - seen):
            path = [node, *walk(nxt, seen | {nxt})]
            if len(path) > len(best):
                best = path
        if memo is not None:
            memo[node] = best
        return best

    paths = (walk(node, frozenset({node})) for node in sorted(graph))
    return max(paths, key=len), cycle


# -- classes and functions -----------------------------------------------------------------


def lines(node: ast.AST) -> int:
    return int(getattr(node, "end_lineno", 0)) - int(getattr(node, "lineno", 0)) + 1


def classes(module: Module) -> Iterator[tuple[str, ast.ClassDef]]:
    def walk(body: list[ast.stmt], prefix: str) -> Iterator[tuple[str, ast.ClassDef]]:
        for node in body:
            if isinstance(node, ast.ClassDef):
                yield prefix + node.name, node
            if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                yield from walk(node.body, f"{prefix}{node.name}.")

    return walk(module.tree.body, "")


def methods(cls: ast.ClassDef) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in cls.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def _self_attr(node: ast.expr) -> str | None:
    """``X`` when ``node`` is ``self.X is not None``."""
    if (
        isinstance(node, ast.Compare)
        and isinstance(node.ops[0], ast.IsNot)
        and isinstance(node.comparators[0], ast.Constant)
        and node.comparators[0].value is None
        and isinstance(node.left, ast.Attribute)
        and isinstance(node.left.value, ast.Name)
        and node.left.value.id == "self"
    ):
        return node.left.attr
    return None


def _uses_member(nodes: list[ast.stmt] | ast.expr, attr: str) -> bool:
    """Whether ``self.<attr>.<something>`` appears in ``nodes``."""
    for top in nodes if isinstance(nodes, list) else [nodes]:
        for node in ast.walk(top):
            inner = node.value if isinstance(node, ast.Attribute) else None
            if (
                isinstance(inner, ast.Attribute)
                and inner.attr == attr
                and isinstance(inner.value, ast.Name)
                and inner.value.id == "self"
            ):
                return True
    return False


def starts_by_forwarding(method: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    body = method.body
    if len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    first = body[0]
    if isinstance(first, ast.If) and (attr := _self_attr(first.test)):
        return _uses_member(first.body, attr)
    if isinstance(first, ast.Return) and isinstance(first.value, ast.IfExp):
        attr = _self_attr(first.value.test)
        return attr is not None and _uses_member(first.value.body, attr)
    return False


Definition = ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef


def definitions(body: list[ast.stmt]) -> dict[str, Definition]:
    return {n.name: n for n in body if isinstance(n, Definition)}


def find_def(module: Module, qualname: str) -> Definition | None:
    found: Definition | None = None
    for part in qualname.split("."):
        found = definitions(found.body if found else module.tree.body).get(part)
        if found is None:
            return None
    return found


def private_helpers(module: Module, node: Definition) -> list[Definition]:
    """Module-level ``_names`` (functions, classes) that ``node`` uses, transitively."""
    top = {k: v for k, v in definitions(module.tree.body).items() if k.startswith("_")}
    found: list[Definition] = []
    todo = [node]
    while todo:
        for sub in ast.walk(todo.pop()):
            helper = top.get(sub.id) if isinstance(sub, ast.Name) else None
            if helper is not None and helper is not node and helper not in found:
                found.append(helper)
                todo.append(helper)
    return found


# -- running the tests ---------------------------------------------------------------------


def run(args: list[str], env: dict[str, str] | None = None) -> tuple[float, str, int]:
    """Wall seconds, combined output and exit code of ``python <args>`` at the root."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    return time.perf_counter() - started, done.stdout, done.returncode


def summary(output: str) -> str:
    """pytest's closing line, e.g. ``532 passed in 10.67s``."""
    found = re.findall(r"^=*\s*([^=\n]*\bin [\d.]+s\b[^=\n]*?)\s*=*$", output, re.M)
    return found[-1] if found else "no summary line"


def coverage_figures() -> tuple[float, str, int, dict[str, object]]:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "COVERAGE_FILE": str(Path(tmp) / ".coverage")}
        args = ["-m", "coverage", "run", f"--source={PACKAGE}", *PYTEST]
        seconds, output, code = run(args, env)
        report = Path(tmp) / "coverage.json"
        subprocess.run(
            [sys.executable, "-m", "coverage", "json", "-q", "-o", str(report)],
            cwd=ROOT,
            env=env,
            check=True,
        )
        data: dict[str, object] = json.loads(report.read_text())
    return seconds, summary(output), code, data


def scenario_figures(nodeid: str) -> tuple[str, int]:
    """pytest's ``--durations`` figures of one test run alone, and its JUnit XML time (ms)."""
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        args = ["-m", "pytest", nodeid, "-q", "-p", "no:cacheprovider", f"--junitxml={xml}"]
        _, output, code = run([*args, "--durations=0", "--durations-min=0"])
        cases = ElementTree.parse(xml).iter("testcase") if xml.exists() else iter(())
        junit = sum(float(case.get("time", "0")) for case in cases)
    phases: dict[str, float] = {}
    for seconds, phase in re.findall(r"^([\d.]+)s (setup|call|teardown) ", output, re.M):
        phases[phase] = phases.get(phase, 0.0) + float(seconds)
    if code or "call" not in phases:
        return f"failed or not run ({summary(output)})", code or 1
    return (
        f"{phases['call']:.2f} s call, {sum(phases.values()):.2f} s with setup and teardown "
        f"(JUnit XML: {junit:.3f} s)",
        0,
    )


# -- the report ----------------------------------------------------------------------------

Row = tuple[str, str, str]


def structure_rows(modules: dict[str, Module]) -> list[Row]:
    graph = {name: imported(m, modules) for name, m in modules.items() if m.has_code}
    chain, cycle = longest_chain(graph)
    floors, shown = len(chain) - 1, " → ".join(modules[name].short for name in chain)
    print(f"import graph: {len(graph)} modules with code, {sum(map(len, graph.values()))} edges")
    print(f"longest chain ({floors} floors, {len(chain)} modules): {shown}")
    print("cycle: " + (" → ".join(modules[n].short for n in cycle) if cycle else "none"))
    rows = [
        ("floors (edges of the longest import path)", "≤ 9", str(floors)),
        ("longest import chain (modules)", "≤ 10", f"{len(chain)}: {shown}"),
    ]

    polling = [(m, q, c) for m in modules.values() for q, c in classes(m) if q in POLLING_CLASSES]
    if polling:
        module, name, cls = polling[0]
        text = module.path.read_text().splitlines()
        grep = sum("if self._ws is not None" in line for line in text)
        forwarding = [f.name for f in methods(cls) if starts_by_forwarding(f)]
        print(f"{name} ({module.short}): {grep} lines with `if self._ws is not None`")
        print(f"  {len(forwarding)} methods start by forwarding: {', '.join(forwarding)}")
        measured = f"{grep} lines; {len(forwarding)} methods start by forwarding ({name})"
    else:
        print("no long-polling class")
        measured = "no long-polling class"
    rows.append(("forwarding branches in the polling class", "0", measured))

    sizes = sorted(
        ((lines(c), f"{m.short}:{q}") for m in modules.values() for q, c in classes(m)),
        key=lambda item: (-item[0], item[1]),
    )
    print("largest classes: " + "; ".join(f"{name} {n}" for n, name in sizes[:5]))
    wide = [
        f"{m.short}:{q} ({len(methods(c))})"
        for m in modules.values()
        if not m.name.startswith(f"{PACKAGE}.edge")
        for q, c in classes(m)
        if len(methods(c)) >= 20
    ]
    print(f"classes with 20+ methods outside edge: {len(wide)} {', '.join(wide)}")
    rows.append(("largest class (lines)", "≤ 200", f"{sizes[0][0]} ({sizes[0][1]})"))
    rows.append(("classes with 20+ methods outside edge", "", f"{len(wide)} {', '.join(wide)}"))
    return rows


def loop_row(modules: dict[str, Module], specs: list[str]) -> tuple[Row, bool]:
    measured, ok = [], True
    for spec in specs:
        name, _, qualname = spec.partition(":")
        module = modules.get(name) or modules.get(f"{PACKAGE}.{name}")
        found = find_def(module, qualname) if module else None
        if module is None or found is None:
            print(f"loop {spec}: not found")
            measured.append(f"{spec}: not found")
            ok = False
            continue
        helpers = private_helpers(module, found)
        whole = lines(found) + sum(map(lines, helpers))
        named = ", ".join(h.name for h in helpers) or "none"
        print(
            f"loop {module.short}:{qualname}: {lines(found)} lines; {whole} with helpers ({named})"
        )
        measured.append(f"{qualname} {lines(found)} ({whole} with its private helpers)")
    return ("per-connection loop (lines)", "≤ 100", "; ".join(measured)), ok


def timed_rows() -> tuple[list[Row], int]:
    seconds, line, code, data = coverage_figures()
    files: dict[str, dict[str, dict[str, float]]] = data["files"]  # type: ignore[assignment]
    totals: dict[str, float] = data["totals"]  # type: ignore[assignment]
    print(f"\ncoverage run of tests/unit: {line}, {seconds:.1f} s wall")
    print("| module | statements | missed | covered |\n| --- | ---: | ---: | ---: |")
    by_missed = sorted(files.items(), key=lambda kv: -kv[1]["summary"]["missing_lines"])
    for path, figures in by_missed[:15]:
        s = figures["summary"]
        name = Path(path).resolve().relative_to(SRC / PACKAGE).as_posix()
        missed, covered = s["missing_lines"], s["percent_covered"]
        print(f"| {name} | {s['num_statements']:.0f} | {missed:.0f} | {covered:.0f}% |")
    percent, covered, statements = (
        totals[k] for k in ("percent_covered", "covered_lines", "num_statements")
    )
    rows = [
        (
            "in-process coverage of chat_gateway (tests/unit)",
            "≥ 85%",
            f"{percent:.1f}% ({covered:.0f} of {statements:.0f} statements)",
        )
    ]
    plain_seconds, output, plain_code = run(PYTEST)
    print(f"plain tests/unit: {summary(output)}, {plain_seconds:.1f} s wall")
    rows.append(("`make test-unit` time", "", f"{plain_seconds:.1f} s wall ({summary(output)})"))
    return rows, code or plain_code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Figures of the gateway's shape.")
    parser.add_argument("--loop", action="append", metavar="MODULE:QUALNAME")
    parser.add_argument("--scenario", metavar="NODEID", help="a pytest node id")
    parser.add_argument("--skip-tests", action="store_true", help="no coverage, no timings")
    opts = parser.parse_args(argv)
    modules = load_modules()
    rows = structure_rows(modules)
    defaults = next((v for k, v in DEFAULT_LOOPS.items() if k in modules), [])
    row, ok = loop_row(modules, opts.loop or defaults)
    rows.append(row)
    status = 0 if ok else 1
    if opts.skip_tests:
        rows.append(("in-process coverage of chat_gateway (tests/unit)", "≥ 85%", "not run"))
        rows.append(("`make test-unit` time", "", "not run (--skip-tests)"))
    else:
        more, code = timed_rows()
        rows += more
        status = status or code
    if opts.scenario:
        measured, code = scenario_figures(opts.scenario)
        rows.append((f"scenario `{opts.scenario}` (unit tier)", "", measured))
        status = status or code
    else:
        rows.append(("join/send/leave/resume scenario (unit tier)", "", "n/a"))

    described = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    args = sys.argv[1:] if argv is None else argv
    command = shlex.join([".venv/bin/python", "scripts/house_metrics.py", *args])
    print(f"\nMeasured at {described} on {os.cpu_count()} cores by `{command}`:\n")
    print("| figure | target | measured |\n| --- | --- | --- |")
    for figure, target, value in rows:
        print(f"| {figure} | {target} | {value} |")
    return status


if __name__ == "__main__":
    sys.exit(main())
