"""Async HTTP for tests (never block the event loop the clients run on)."""

from __future__ import annotations

from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["get_json", "get_text", "metric"]


async def get_json(url: str, *, timeout: float = 5.0) -> tuple[int, Any]:
    timeouts = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(timeout=timeouts) as session, session.get(url) as response:
        return response.status, await response.json(content_type=None)


async def get_text(url: str, *, timeout: float = 5.0) -> tuple[int, str]:
    timeouts = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(timeout=timeouts) as session, session.get(url) as response:
        return response.status, await response.text()


async def metric(url: str, name: str, **labels: str) -> float:
    """One sample of a Prometheus ``/metrics`` page (0.0 when absent)."""
    status, text = await get_text(url)
    assert status == 200
    wanted = sorted(labels.items())
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sorted(sample.labels.items()) == wanted:
                return float(sample.value)
    return 0.0
