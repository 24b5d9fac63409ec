"""What the services' logs say, for tests that must leave no error behind.

The services log one JSON object per line with a lower-case ``level`` (``"error"``, not
``"ERROR"``); a crash that escapes logging writes a plain-text traceback to the same file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

__all__ = ["error_lines", "stack_errors"]

_ERROR_LEVELS = frozenset({"error", "critical", "fatal"})


class _Logged(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def log_path(self) -> Path: ...


def error_lines(path: Path) -> list[str]:
    """Lines of one log at level error or worse, and any line of a traceback."""
    found = []
    for line in path.read_text(errors="replace").splitlines():
        if "Traceback" in line:
            found.append(line)
            continue
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and str(record.get("level", "")).lower() in _ERROR_LEVELS:
            found.append(line)
    return found


def stack_errors(services: Iterable[_Logged]) -> dict[str, list[str]]:
    """Each service's error lines (services without any are left out)."""
    return {s.name: lines for s in services if (lines := error_lines(s.log_path))}
