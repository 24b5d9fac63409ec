"""Network faults between our services and NATS, Redis and Postgres, under load: a link
that goes silent without a FIN (for a while, or for good for the connections open at that
moment), a slow link, and a reset link, each costing retries and a pause but never a lost,
doubled, reordered or unanswered message."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.chaos.harness import run_scenario
from tests.chaos.links import LinkFault, LinkName, linked_stack
from tests.conftest import Servers
from tests.support.faultproxy import BLACKHOLE, RESET, Mode, latency

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(300)]

FROZEN = None
"""Freeze the link's open connections for good; new connections pass."""

SCENARIOS: dict[str, tuple[LinkName, Mode | None, float]] = {
    # Longer than four NATS ping intervals (LINK_ENV): every client notices the dead link.
    "nats link blackholed 8 s": ("nats", BLACKHOLE, 8),
    # Longer than SESSION_REDIS_TIMEOUT_S (2 s): Redis calls time out meanwhile.
    "redis link blackholed 6 s": ("redis", BLACKHOLE, 6),
    # Longer than HISTORY_COMMAND_TIMEOUT_S (2 s in CHAOS_ENV): queries time out meanwhile.
    "postgres link blackholed 6 s": ("postgres", BLACKHOLE, 6),
    "postgres link latency 75 ms each way for 6 s": ("postgres", latency(0.075), 6),
    "nats link reset": ("nats", RESET, 1),
    "redis link reset": ("redis", RESET, 1),
    "postgres link reset": ("postgres", RESET, 1),
    # A blackhole that never heals for the connections open at that moment: only the
    # clients' own timeouts can free them (a link that heals would free them anyway).
    "nats connections frozen for good": ("nats", FROZEN, 0),
    "redis connections frozen for good": ("redis", FROZEN, 0),
    "postgres connections frozen for good": ("postgres", FROZEN, 0),
}

SETTLE_S = 30
"""Bound on the rest of the load once the fault has ended: under 10 s when the services
recover (a 3x margin or more for a busy machine), minutes when they do not."""


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_link_fault(servers: Servers, tmp_path: Path, name: str) -> None:
    """Under load, a frozen, slow or reset link to NATS, Redis or Postgres costs retries
    and a pause, never a lost, doubled, reordered or unanswered message, every client that
    reconnects recovers its session, and the load finishes soon after the fault."""
    link, mode, hold_s = SCENARIOS[name]
    async with linked_stack(servers, tmp_path) as links:
        fault = LinkFault(links, link, mode, hold_s)
        began = time.monotonic()
        outcome = await run_scenario(
            links.stack, name, fault, store_dsn=links.direct_dsn, traffic_timeout_s=SETTLE_S
        )
        print(
            f"{name}: {outcome}, {fault.new_connections} new connections, "
            f"{time.monotonic() - began:.1f} s"
        )
    assert outcome.messages == 40 * 50
    assert (outcome.lost, outcome.duplicated, outcome.out_of_order, outcome.hung) == (0, 0, 0, 0), (
        outcome
    )
    assert outcome.not_recovered == 0, outcome
    if mode is None or not mode.forwards:  # FROZEN, a blackhole or a reset
        # The fault was noticed: every service whose link died opened a new connection.
        assert fault.new_connections >= (4 if link == "nats" else 1), fault.new_connections
