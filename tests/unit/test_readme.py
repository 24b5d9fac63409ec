"""The README stays honest about configuration and commands."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_config_table_matches_the_settings_classes() -> None:
    """The README's configuration table is exactly what scripts/config_table.py renders."""
    render = runpy.run_path(str(ROOT / "scripts" / "config_table.py"))["render"]
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- config-table:start -->\n(.*)\n<!-- config-table:end -->", readme, re.S)
    assert match is not None
    assert match.group(1) == render()


def test_ci_runs_the_readme_test_command() -> None:
    """.ci/run calls `make test`, the test command the README shows."""
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "make test " in (ROOT / "README.md").read_text()
