"""The log check of the integration suites (tests/support/logs.py) finds what services log."""

from __future__ import annotations

from pathlib import Path

from tests.support.logs import error_lines


def test_errors_are_found_at_the_level_services_write(tmp_path: Path) -> None:
    """The services write ``"level": "error"`` in lower case: such a line, and a plain-text
    traceback, are found; info, warnings and start markers are not."""
    log = tmp_path / "gateway-1.log"
    lines = [
        "=== 2026-12-07 01:16:35 start gateway-1: python -m chat_gateway",
        '{"ts": "t", "level": "info", "event": "ready"}',
        '{"ts": "t", "level": "warning", "event": "user stream head unknown"}',
        '{"ts": "t", "level": "error", "event": "client event failed", "code": "INTERNAL"}',
        "Traceback (most recent call last):",
        '{"ts": "t", "level": "info", "event": "an ERROR in a message is not an error"}',
    ]
    log.write_text("\n".join(lines) + "\n")
    assert error_lines(log) == [lines[3], lines[4]]
