"""Process entry point shared by every service: uvloop, logging, exit code."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable

import uvloop

__all__ = ["run_main"]


def run_main(main: Callable[[], Awaitable[int]]) -> None:
    """Run ``main`` on uvloop and exit with the code it returns."""
    sys.exit(uvloop.run(main()))  # type: ignore[arg-type]
