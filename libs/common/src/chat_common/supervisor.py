"""Background work with names and owners: supervised loops and tracked in-flight tasks.

Nothing in a service calls ``asyncio.create_task`` directly: long-lived loops go through
:class:`TaskSupervisor` (restarted with backoff on crash, or marking the service unhealthy),
short-lived request work through :class:`InFlight` (awaited on shutdown). Either way no task
is left pending at exit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from chat_common.backoff import Backoff

__all__ = ["InFlight", "TaskSupervisor"]

_log = logging.getLogger("chat.supervisor")


@dataclass
class _Supervised:
    name: str
    factory: Callable[[], Awaitable[None]]
    restart: bool
    critical: bool
    task: asyncio.Task[None] | None = None
    restarts: int = 0
    failed: bool = False
    backoff: list[float] = field(default_factory=lambda: [0.1, 5.0])


class TaskSupervisor:
    """Starts named background loops, restarts them on crash, cancels them all on close."""

    def __init__(self) -> None:
        self._tasks: dict[str, _Supervised] = {}
        self._closing = False

    @property
    def healthy(self) -> bool:
        """False once a critical task has failed for good."""
        return not any(s.failed and s.critical for s in self._tasks.values())

    def running(self) -> list[str]:
        """Names of the tasks still running."""
        return [s.name for s in self._tasks.values() if s.task and not s.task.done()]

    def spawn(
        self,
        name: str,
        factory: Callable[[], Awaitable[None]],
        *,
        restart: bool = True,
        critical: bool = True,
        initial_backoff_s: float = 0.1,
        max_backoff_s: float = 5.0,
    ) -> None:
        """Run ``factory()`` as task ``name``.

        A crash is logged; with ``restart`` the task runs again after a jittered exponential
        backoff, otherwise it is marked failed (which makes the service unhealthy when
        ``critical``). A task that returns normally is not restarted.
        """
        if name in self._tasks:
            raise ValueError(f"task {name!r} already supervised")
        sup = _Supervised(
            name, factory, restart, critical, backoff=[initial_backoff_s, max_backoff_s]
        )
        self._tasks[name] = sup
        sup.task = asyncio.create_task(self._run(sup), name=name)

    async def _run(self, sup: _Supervised) -> None:
        backoff = Backoff(sup.backoff[0], cap_s=sup.backoff[1])
        while True:
            try:
                await sup.factory()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                _log.exception("supervised task crashed", extra={"task": sup.name})
                if not sup.restart or self._closing:
                    sup.failed = True
                    return
            sup.restarts += 1
            await asyncio.sleep(backoff.next())

    async def close(self, timeout: float = 5.0) -> list[str]:
        """Cancel every task and wait for them; returns the names that did not finish."""
        self._closing = True
        tasks = [s.task for s in self._tasks.values() if s.task and not s.task.done()]
        for task in tasks:
            task.cancel()
        if not tasks:
            return []
        _done, pending = await asyncio.wait(tasks, timeout=timeout)
        return [t.get_name() for t in pending]


class InFlight:
    """Tracks short-lived work (one task per request) so shutdown can wait for it."""

    def __init__(self, *, limit: int) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._slots = asyncio.Semaphore(limit)
        self._idle = asyncio.Event()
        self._idle.set()

    def __len__(self) -> int:
        return len(self._tasks)

    async def spawn(self, coro: Coroutine[Any, Any, None], *, name: str = "request") -> None:
        """Start ``coro`` once a slot is free (backpressure when ``limit`` are running)."""
        await self._slots.acquire()
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        self._idle.clear()
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        self._slots.release()
        if not self._tasks:
            self._idle.set()
        if not task.cancelled() and (exc := task.exception()) is not None:
            _log.error("in-flight task failed", exc_info=exc, extra={"task": task.get_name()})

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is in flight; False if ``timeout`` passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def cancel_all(self, timeout: float = 2.0) -> None:
        """Cancel whatever is still running and wait for it briefly."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
