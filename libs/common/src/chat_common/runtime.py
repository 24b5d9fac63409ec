"""The lifespan every service's ``main`` runs inside.

``async with ServiceRuntime(settings, name=...) as rt:`` configures logging, installs the
signal handlers, starts the ops HTTP port (so ``/livez`` answers while dependencies are
still coming up), connects to NATS, and on exit runs the shared shutdown order
(see :mod:`chat_common.lifecycle`). ``main`` adds its own clients, endpoints, checks and
shutdown steps in between, then awaits ``rt.lifecycle.wait_stopping()``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Self

from aiohttp import web
from nats.aio.client import Client
from nats.micro.service import Service

from chat_common.gctuning import settle_heap
from chat_common.health import Check, OpsServer
from chat_common.lifecycle import Lifecycle, Phase
from chat_common.logs import configure_logging
from chat_common.metrics import track_state
from chat_common.natsio import Handler, connect, nats_login, serve
from chat_common.settings import ServiceSettings
from chat_common.supervisor import InFlight
from chat_common.tracing import setup_tracing, shutdown_tracing

__all__ = ["ServiceRuntime", "pending_tasks"]

_log = logging.getLogger("chat.runtime")


def pending_tasks() -> list[str]:
    """Names of the tasks still pending, other than the caller's own."""
    current = asyncio.current_task()
    return sorted(t.get_name() for t in asyncio.all_tasks() if t is not current and not t.done())


class ServiceRuntime:
    """Owns the lifecycle, the ops server, the NATS connection and in-flight tracking."""

    def __init__(
        self,
        settings: ServiceSettings,
        *,
        name: str,
        routes: Mapping[str, Callable[[web.Request], Awaitable[web.StreamResponse]]] = {},
    ) -> None:
        self.settings = settings
        self.name = name
        self.lifecycle = Lifecycle(grace_s=settings.shutdown_grace_s)
        self.inflight = InFlight(limit=settings.max_inflight)
        self.ops = OpsServer(
            host=settings.http_host,
            port=settings.http_port,
            lifecycle=self.lifecycle,
            checks={},
            routes=routes,
        )
        self.exit_code = 0
        try:
            self._login = nats_login(settings)
        except ValueError as exc:
            raise SystemExit(f"{name}: unusable NATS credentials: {exc}") from None
        self._nc: Client | None = None
        self._services: list[Service] = []
        self._nats_up_since: float | None = None

    @property
    def nc(self) -> Client:
        if self._nc is None:
            raise RuntimeError("NATS is not connected yet")
        return self._nc

    async def __aenter__(self) -> Self:
        s = self.settings
        configure_logging(
            service=self.name, instance=s.instance_id, level=s.log_level, fmt=s.log_format
        )
        setup_tracing(service=self.name, instance=s.instance_id)
        self.lifecycle.install_signal_handlers()
        await self.ops.start()
        _log.info("ops port listening", extra={"port": self.ops.port})
        self._nc = await connect(
            s,
            name=self.name,
            stopping=self.lifecycle.stopping,
            on_state=self._nats_state,
            login=self._login,
        )
        self.add_check("nats", self._check_nats)
        nc = self._nc
        track_state(ready=lambda: self.lifecycle.ready, nats_connected=lambda: nc.is_connected)
        self.lifecycle.on_shutdown(Phase.STOP_INTAKE, "nats-endpoints", self._stop_services)
        self.lifecycle.on_shutdown(Phase.DRAIN_INFLIGHT, "in-flight requests", self._drain_inflight)
        self.lifecycle.on_shutdown(
            Phase.CANCEL_TASKS, "in-flight leftovers", self.inflight.cancel_all
        )
        self.lifecycle.on_shutdown(Phase.DRAIN_NATS, "nats", self._drain_nats)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            _log.error("service failed", exc_info=exc)
        self.exit_code = await self.lifecycle.shutdown()
        await self.ops.stop()
        shutdown_tracing()
        if exc is not None and self.exit_code == 0:
            self.exit_code = 1
        leftovers = pending_tasks()
        if leftovers:
            _log.error("tasks left pending at exit", extra={"tasks": leftovers})
            self.exit_code = self.exit_code or 1
        else:
            _log.info("no task left pending at exit", extra={"exit_code": self.exit_code})

    def _nats_state(self, up: bool) -> None:
        self._nats_up_since = time.monotonic() if up else None

    def nats_stable_for(self, seconds: float) -> bool:
        """Whether NATS has been connected without a break for at least ``seconds``."""
        since = self._nats_up_since
        return since is not None and time.monotonic() - since >= seconds

    def mark_ready(self) -> None:
        """Start-up is done: settle the heap (:mod:`chat_common.gctuning`) and report ready."""
        settle_heap()
        self.lifecycle.mark_ready()

    def add_check(self, name: str, check: Check) -> None:
        """Add a readiness check (a coroutine that raises when not ready)."""
        self.ops.add_check(name, check)

    async def serve(
        self,
        *,
        version: str,
        endpoints: Mapping[str, Handler],
        subject: Callable[[str], str],
    ) -> Service:
        """Expose ``endpoints`` (name → handler) as a ``nats.micro`` service named after this
        service; each endpoint listens on ``subject(name)``."""
        service = await serve(
            self.nc,
            name=self.name,
            version=version,
            instance_id=self.settings.instance_id,
            endpoints=endpoints,
            subject=subject,
            inflight=self.inflight,
            accepting=lambda: self.lifecycle.ready,
        )
        self._services.append(service)
        return service

    async def _check_nats(self) -> None:
        nc = self.nc
        if not nc.is_connected:
            raise ConnectionError("NATS not connected")
        for service in self._services:
            # A round trip through our own subscription: a deaf subscriber fails readiness.
            await nc.request(f"$SRV.PING.{self.name}.{service.id}", b"", timeout=1.0)
        if not self._services:
            await nc.flush(timeout=1)

    async def _stop_services(self) -> None:
        for service in self._services:
            await service.stop()

    async def _drain_inflight(self) -> None:
        # Bounded by the lifecycle's grace budget; whatever is left is cancelled next phase.
        while not await self.inflight.wait_idle(1.0):
            _log.info("waiting for in-flight requests", extra={"count": len(self.inflight)})

    async def _drain_nats(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.drain()
