"""Chaos scenarios: every component faulted under load; nothing lost, doubled or hung."""

from __future__ import annotations

import pytest

from tests.chaos.harness import CHAOS_ENV, Fault, fault, run_scenario
from tests.conftest import MakeStack

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(900)]

SCENARIOS: dict[str, Fault] = {
    "gateway SIGKILL + restart": fault("gateway", "kill", 2),
    "session SIGKILL + restart": fault("session", "kill", 2),
    "history SIGKILL + restart": fault("history", "kill", 2),
    "nats-server SIGKILL + restart": fault("nats", "kill", 2),
    "redis-server SIGKILL + restart": fault("redis", "kill", 2),
    "postgres SIGKILL + restart": fault("postgres", "kill", 2),
    "postgres SIGSTOP 30 s": fault("postgres", "stop", 30),
    "nats-server down 150 s": fault("nats", "down", 150),
    "gateway SIGTERM under load": fault("gateway", "term", 1),
    "session SIGTERM under load": fault("session", "term", 1),
    "history SIGTERM under load": fault("history", "term", 1),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_chaos_scenario(make_stack: MakeStack, name: str) -> None:
    """Under load, the fault costs retries and a pause, never a lost, doubled, reordered
    or unanswered message; every client that reconnects recovers its session."""
    stack = await make_stack(
        gateways=2, balancer=True, own_redis=True, own_postgres=True, env=CHAOS_ENV
    )
    outcome = await run_scenario(stack, name, SCENARIOS[name])
    assert outcome.messages == 40 * 50
    assert (outcome.lost, outcome.duplicated, outcome.out_of_order, outcome.hung) == (0, 0, 0, 0), (
        outcome
    )
    assert outcome.not_recovered == 0, outcome
