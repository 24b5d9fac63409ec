"""One lifespan and one shutdown order, shared by every service.

On SIGTERM/SIGINT a service goes through these phases, in this order::

    readiness false
    STOP_INTAKE      stop accepting work (listeners, NATS endpoints)
    CLOSE_CLIENTS    gateway: close client connections with 1012 so they resume elsewhere
    DRAIN_INFLIGHT   in-flight requests finish and get their reply
    CANCEL_TASKS     supervised background tasks are cancelled and awaited
    CLOSE_POOLS      Redis / Postgres pools closed
    DRAIN_NATS       NATS drained last (replies and publishes above still go out)

The first three phases share the grace budget (``shutdown_grace_s``); if it runs out, the
rest still runs (briefly) and the process exits non-zero with a log line naming what was
still running. A second signal forces an immediate exit.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from enum import IntEnum

from chat_common.supervisor import TaskSupervisor

__all__ = ["EXIT_FORCED", "EXIT_GRACE_EXCEEDED", "Lifecycle", "Phase"]

EXIT_GRACE_EXCEEDED = 1
EXIT_FORCED = 130
_CLEANUP_STEP_TIMEOUT_S = 5.0

_log = logging.getLogger("chat.lifecycle")


class Phase(IntEnum):
    """Shutdown phases, run in increasing order."""

    STOP_INTAKE = 1
    CLOSE_CLIENTS = 2
    DRAIN_INFLIGHT = 3
    CANCEL_TASKS = 4
    CLOSE_POOLS = 5
    DRAIN_NATS = 6


_GRACE_PHASES = (Phase.STOP_INTAKE, Phase.CLOSE_CLIENTS, Phase.DRAIN_INFLIGHT)
Step = Callable[[], Awaitable[object]]


class Lifecycle:
    """Readiness flag, signal handling, task supervision and the ordered shutdown."""

    def __init__(self, *, grace_s: float) -> None:
        self.grace_s = grace_s
        self.supervisor = TaskSupervisor()
        self.stopping = asyncio.Event()
        self._ready = False
        self._steps: dict[Phase, list[tuple[str, Step]]] = {p: [] for p in Phase}
        self._signals = 0

    @property
    def ready(self) -> bool:
        """Whether the service wants traffic (set by ``main`` once it is started)."""
        return self._ready and not self.stopping.is_set() and self.supervisor.healthy

    def mark_ready(self) -> None:
        self._ready = True

    def mark_not_ready(self) -> None:
        """Stop wanting traffic while staying up (a gateway being drained)."""
        self._ready = False

    def on_shutdown(self, phase: Phase, name: str, step: Step) -> None:
        """Register ``step`` to run in ``phase``; steps of a phase run in registration order."""
        self._steps[phase].append((name, step))

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT start the shutdown; a second one forces exit."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        self._signals += 1
        if self._signals == 1:
            _log.info("shutdown requested", extra={"signal": sig.name})
            self.stopping.set()
            return
        _log.error(
            "second signal: forcing exit",
            extra={"signal": sig.name, "still_running": self.supervisor.running()},
        )
        os._exit(EXIT_FORCED)

    async def wait_stopping(self) -> None:
        await self.stopping.wait()

    async def shutdown(self) -> int:
        """Run every phase in order; returns the process exit code."""
        self.stopping.set()
        _log.info("readiness false: shutting down", extra={"grace_s": self.grace_s})
        deadline = time.monotonic() + self.grace_s
        exit_code = 0
        for phase in Phase:
            _log.info("shutdown phase", extra={"phase": phase.name})
            if phase is Phase.CANCEL_TASKS:
                pending = await self.supervisor.close(_CLEANUP_STEP_TIMEOUT_S)
                if pending:
                    _log.error("tasks did not stop", extra={"still_running": pending})
                    exit_code = EXIT_GRACE_EXCEEDED
            for name, step in self._steps[phase]:
                if phase in _GRACE_PHASES:
                    budget = max(deadline - time.monotonic(), 0.01)
                else:
                    budget = _CLEANUP_STEP_TIMEOUT_S
                ok = await self._run_step(phase, name, step, budget)
                if not ok:
                    exit_code = EXIT_GRACE_EXCEEDED
        _log.info("shutdown complete", extra={"exit_code": exit_code})
        return exit_code

    async def _run_step(self, phase: Phase, name: str, step: Step, budget: float) -> bool:
        started = time.monotonic()
        try:
            await asyncio.wait_for(step(), budget)
        except TimeoutError:
            _log.error(
                "shutdown step exceeded its time",
                extra={"phase": phase.name, "step": name, "budget_s": round(budget, 3)},
            )
            return False
        except Exception:
            _log.exception("shutdown step failed", extra={"phase": phase.name, "step": name})
            return False
        _log.debug(
            "shutdown step done",
            extra={
                "phase": phase.name,
                "step": name,
                "ms": round((time.monotonic() - started) * 1e3),
            },
        )
        return True
