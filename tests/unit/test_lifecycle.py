"""The shared shutdown order and task supervision."""

from __future__ import annotations

import asyncio

from chat_common.lifecycle import EXIT_GRACE_EXCEEDED, Lifecycle, Phase
from chat_common.supervisor import InFlight, TaskSupervisor


async def test_shutdown_runs_phases_in_order() -> None:
    """Steps run phase by phase, whatever order they were registered in; exit code 0."""
    life = Lifecycle(grace_s=5)
    order: list[str] = []

    def step(name: str):  # type: ignore[no-untyped-def]
        async def run() -> None:
            order.append(name)

        return run

    life.on_shutdown(Phase.DRAIN_NATS, "nats", step("nats"))
    life.on_shutdown(Phase.CLOSE_POOLS, "pools", step("pools"))
    life.on_shutdown(Phase.STOP_INTAKE, "intake", step("intake"))
    life.on_shutdown(Phase.CLOSE_CLIENTS, "clients", step("clients"))
    life.on_shutdown(Phase.DRAIN_INFLIGHT, "inflight", step("inflight"))
    life.mark_ready()
    assert life.ready
    assert await life.shutdown() == 0
    assert not life.ready
    assert order == ["intake", "clients", "inflight", "pools", "nats"]


async def test_grace_exceeded_gives_nonzero_exit_and_still_cleans_up() -> None:
    """A step over the grace budget is cut; later phases still run; the exit code says so."""
    life = Lifecycle(grace_s=0.05)
    cleaned = asyncio.Event()

    async def stuck() -> None:
        await asyncio.Event().wait()

    async def cleanup() -> None:
        cleaned.set()

    life.on_shutdown(Phase.DRAIN_INFLIGHT, "stuck", stuck)
    life.on_shutdown(Phase.DRAIN_NATS, "nats", cleanup)
    assert await life.shutdown() == EXIT_GRACE_EXCEEDED
    assert cleaned.is_set()


async def test_supervisor_restarts_a_crashing_task() -> None:
    """A crashed task runs again; close cancels it and nothing is left pending."""
    sup = TaskSupervisor()
    runs = 0
    second_run = asyncio.Event()

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise RuntimeError("first run fails")
        second_run.set()
        await asyncio.Event().wait()

    sup.spawn("flaky", flaky, initial_backoff_s=0.001)
    await asyncio.wait_for(second_run.wait(), 5)
    assert sup.healthy
    assert await sup.close() == []
    assert sup.running() == []


async def test_supervisor_marks_unhealthy_when_a_critical_task_fails_for_good() -> None:
    """Without restart, a critical task's crash makes the supervisor unhealthy."""
    sup = TaskSupervisor()

    async def fails() -> None:
        raise RuntimeError("boom")

    sup.spawn("once", fails, restart=False)
    for _ in range(100):
        if not sup.healthy:
            break
        await asyncio.sleep(0)
    assert not sup.healthy
    await sup.close()


async def test_inflight_waits_for_running_work() -> None:
    """wait_idle returns once every tracked task is done."""
    inflight = InFlight(limit=4)
    release = asyncio.Event()

    async def work() -> None:
        await release.wait()

    await inflight.spawn(work())
    assert len(inflight) == 1
    assert not await inflight.wait_idle(0.01)
    release.set()
    assert await inflight.wait_idle(1)
    assert len(inflight) == 0
