"""Async HTTP for tests (never block the event loop the clients run on)."""

from __future__ import annotations

from typing import Any

import aiohttp

__all__ = ["get_json", "get_text"]


async def get_json(url: str, *, timeout: float = 5.0) -> tuple[int, Any]:
    timeouts = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(timeout=timeouts) as session, session.get(url) as response:
        return response.status, await response.json(content_type=None)


async def get_text(url: str, *, timeout: float = 5.0) -> tuple[int, str]:
    timeouts = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(timeout=timeouts) as session, session.get(url) as response:
        return response.status, await response.text()
