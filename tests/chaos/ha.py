"""The production topology for chaos tests (``chat-stack run --ha``: 3 NATS, a 6-node Redis
Cluster, a Postgres primary with a synchronous standby, 2 instances of each service behind
a balancer), and the Postgres failover a failover tool would do on it."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from pathlib import Path

from chat_devstack.ha import HaServers
from chat_devstack.stack import Stack, StackConfig
from tests.chaos.harness import CHAOS_ENV, Fault
from tests.conftest import FAST_SETTINGS
from tests.support.clients import SioClient

__all__ = ["churn_user", "ha_config", "ha_servers", "kill_postgres_primary"]


def ha_config(data_dir: Path) -> StackConfig:
    return StackConfig(
        data_dir=data_dir,
        gateways=2,
        sessions=2,
        histories=2,
        balancer=True,
        ha=True,
        gateway_port=0,
        extra_env={**FAST_SETTINGS, **CHAOS_ENV, "SESSION_KEY_PREFIX": uuid.uuid4().hex[:8]},
    )


def ha_servers(stack: Stack) -> HaServers:
    assert stack.ha is not None
    return stack.ha


def kill_postgres_primary(
    detect_s: float, *, rejoin: bool = False, figures: dict[str, float] | None = None
) -> Fault:
    """SIGKILL the Postgres primary; ``detect_s`` later (a failover tool noticing), promote
    the standby, which then commits alone; with ``rejoin``, the old primary then comes back
    as the new one's standby (``pg_rewind``). ``figures["postgres"]``: seconds from the kill
    to the promotion."""

    async def inject(stack: Stack) -> float:
        pair = ha_servers(stack).postgres
        began = time.monotonic()
        await pair.primary.kill()
        await asyncio.sleep(detect_s)  # the failover tool noticing
        await pair.fail_over()
        if figures is not None:
            figures["postgres"] = round(time.monotonic() - began, 2)
        if rejoin:
            await pair.rejoin()
        return time.monotonic()

    return inject


async def churn_user(
    url: str,
    rooms: list[str],
    stop: asyncio.Event,
    email: str,
    turns: dict[str, int],
    connects: dict[str, list[bool]] | None = None,
) -> None:
    """A user joining and leaving the rooms in turn until ``stop``: presence writes during
    a fault. A call that fails is tried again; the user has left every room at the end.
    ``turns[email]``: how many rooms it joined and left; ``connects[email]``: whether each
    of its connections recovered the session (a drop keeps the old one for its window)."""
    client = SioClient(reconnection=True)
    await client.connect(url)
    if connects is not None:
        connects[email] = client.sio.connects  # the live list: later reconnects show too
    try:
        for turn in itertools.count():
            if stop.is_set():
                break
            room = rooms[turn % len(rooms)]
            for event in ("join", "leave"):
                while True:
                    try:
                        reply = await client.call(event, {"email": email, "roomId": room})
                    except Exception:  # dropped or unanswered (a partition): again
                        reply = {}
                    if reply.get("ok"):
                        break
                    await asyncio.sleep(0.1)
            turns[email] = turn + 1
    finally:
        await client.close()
