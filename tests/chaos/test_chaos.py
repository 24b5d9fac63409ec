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
    "nats-server down 35 s, past the heartbeat TTL + resume window": fault("nats", "down", 35),
    "gateway SIGTERM under load": fault("gateway", "term", 1),
    "session SIGTERM under load": fault("session", "term", 1),
    "history SIGTERM under load": fault("history", "term", 1),
}


SCENARIO_ENV: dict[str, dict[str, str]] = {
    # An outage longer than a session's whole life without heartbeats (TTL 5 s + resume
    # window 25 s here; 30 s + 120 s by default): the reaper must wait for NATS to be back,
    # or every session would be reaped for the heartbeats the outage swallowed.
    "nats-server down 35 s, past the heartbeat TTL + resume window": {
        "SESSION_HEARTBEAT_TTL_S": "5",
        "SESSION_RESUME_WINDOW_S": "25",
    },
}


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_chaos_scenario(make_stack: MakeStack, name: str) -> None:
    """Under load, the fault costs retries and a pause, never a lost, doubled, reordered
    or unanswered message; every client that reconnects recovers its session."""
    stack = await make_stack(
        gateways=2,
        balancer=True,
        own_redis=True,
        own_postgres=True,
        env=CHAOS_ENV | SCENARIO_ENV.get(name, {}),
    )
    # Presence is checked where the fault threatens it (sessions reaped for lost heartbeats).
    outcome = await run_scenario(stack, name, SCENARIOS[name], check_presence=name in SCENARIO_ENV)
    assert outcome.messages == 40 * 50
    assert (outcome.lost, outcome.duplicated, outcome.out_of_order, outcome.hung) == (0, 0, 0, 0), (
        outcome
    )
    assert outcome.not_recovered == 0, outcome
    assert outcome.presence_wrong == 0, outcome
