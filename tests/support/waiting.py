"""Waiting on a condition that can only be polled (a metric, a count in a log file)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

__all__ = ["eventually"]


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], *, timeout: float, every: float = 0.05
) -> None:
    """Return as soon as ``check()`` is true; ``TimeoutError`` after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while True:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            await asyncio.sleep(every)
