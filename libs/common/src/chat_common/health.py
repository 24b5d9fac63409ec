"""The ops HTTP port every service serves: ``/livez``, ``/readyz``, ``/metrics``, extras.

``/readyz`` is 200 only when the lifecycle says ready *and* every check passes; each check
is a coroutine that raises on failure. The body lists every check with its timing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from chat_common.lifecycle import Lifecycle
from chat_common.metrics import metrics_handler

__all__ = ["Check", "OpsServer", "run_checks"]

Check = Callable[[], Awaitable[object]]
_CHECK_TIMEOUT_S = 2.0


async def run_checks(checks: Mapping[str, Check]) -> tuple[bool, dict[str, Any]]:
    """Run every check concurrently; returns (all passed, per-check detail)."""

    async def one(check: Check) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            await asyncio.wait_for(check(), _CHECK_TIMEOUT_S)
        except Exception as exc:
            ms = round((time.perf_counter() - started) * 1e3, 2)
            return {"ok": False, "ms": ms, "error": type(exc).__name__}
        return {"ok": True, "ms": round((time.perf_counter() - started) * 1e3, 2)}

    results = await asyncio.gather(*(one(c) for c in checks.values()))
    detail = dict(zip(checks, results, strict=True))
    return all(r["ok"] for r in results), detail


class OpsServer:
    """aiohttp app on the ops port; started early, stopped late."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        lifecycle: Lifecycle,
        checks: Mapping[str, Check],
        routes: Mapping[str, Callable[[web.Request], Awaitable[web.StreamResponse]]] = {},
    ) -> None:
        self._host, self._port = host, port
        self._lifecycle = lifecycle
        self._checks = dict(checks)
        self._app = web.Application()
        self._app.router.add_get("/livez", self._livez)
        self._app.router.add_get("/readyz", self._readyz)
        self._app.router.add_get("/metrics", metrics_handler)
        for path, handler in routes.items():
            self._app.router.add_get(path, handler)
        self._runner = web.AppRunner(self._app, access_log=None)
        self.port = port

    def add_check(self, name: str, check: Check) -> None:
        self._checks[name] = check

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        sockets = getattr(site._server, "sockets", None)
        if sockets:
            self.port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def _livez(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, _request: web.Request) -> web.Response:
        ok, detail = await run_checks(self._checks)
        ready = ok and self._lifecycle.ready
        body = {"ready": ready, "accepting": self._lifecycle.ready, "checks": detail}
        return web.json_response(body, status=200 if ready else 503)
