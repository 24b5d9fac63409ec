"""A chaos stack whose services reach NATS, Redis and Postgres through fault proxies.

:func:`linked_stack` starts a private NATS server (the services' subjects must not meet
another stack's), takes a fresh database on the shared Postgres and a fresh key prefix on
the shared Redis, puts one :class:`~tests.support.faultproxy.FaultProxy` in front of each,
and runs a stack (2 gateways behind the balancer, 1 session, 1 history) whose services know
only the proxies' addresses. Only our own services' connections cross the proxies, so
freezing or resetting a link affects nothing else on the shared servers.

:class:`LinkFault` is a harness :data:`~tests.chaos.harness.Fault` that switches one link to
a mode for a while and back to pass, or freezes its open connections for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from chat_devstack.servers import NatsServer
from chat_devstack.stack import Stack, StackConfig
from tests.chaos.harness import CHAOS_ENV
from tests.conftest import FAST_SETTINGS, Servers
from tests.support.faultproxy import PASS, FaultProxy, Mode

__all__ = ["LINK_ENV", "LinkFault", "LinkName", "Links", "linked_stack"]

LinkName = Literal["nats", "redis", "postgres"]

LINK_ENV: dict[str, str] = {}
"""Settings for link faults on top of FAST_SETTINGS and CHAOS_ENV: none. A silent NATS link
is noticed with the defaults: nats.py declares the connection stale when more than
max_outstanding_pings (2) are unanswered, about three ping intervals (2 s) after the link
went quiet; nats-server drops the dead client after two missed pings of its own."""


@dataclass
class Links:
    """A running stack and the proxy on each of its links."""

    stack: Stack
    nats: FaultProxy
    redis: FaultProxy
    postgres: FaultProxy
    direct_dsn: str
    """The database's real DSN, bypassing the proxy (for the checker)."""

    def proxy(self, name: LinkName) -> FaultProxy:
        proxy: FaultProxy = getattr(self, name)
        return proxy

    @property
    def proxies(self) -> list[FaultProxy]:
        return [self.nats, self.redis, self.postgres]


@contextlib.asynccontextmanager
async def linked_stack(
    servers: Servers, root: Path, *, env: dict[str, str] | None = None
) -> AsyncIterator[Links]:
    """Start the stack behind fault proxies; everything is stopped on exit (links healed
    first, so a test that failed mid-fault still shuts down cleanly)."""
    nats = NatsServer(root / "nats")
    await nats.start()
    dsn = await servers.create_database()
    proxies = [FaultProxy(nats.url), FaultProxy(servers.redis.url), FaultProxy(dsn)]
    stack: Stack | None = None
    try:
        for proxy in proxies:
            await proxy.start()
        stack = Stack(
            StackConfig(
                data_dir=root / "stack",
                gateways=2,
                balancer=True,
                nats_url=proxies[0].url,
                nats_seed_files=nats.seed_files,
                redis_url=proxies[1].url,
                postgres_dsn=proxies[2].url,
                gateway_port=0,
                extra_env={
                    **FAST_SETTINGS,
                    **CHAOS_ENV,
                    **LINK_ENV,
                    "SESSION_KEY_PREFIX": f"t{uuid.uuid4().hex[:8]}",
                    **(env or {}),
                },
            )
        )
        await stack.start()
        yield Links(stack, proxies[0], proxies[1], proxies[2], direct_dsn=dsn)
    finally:
        for proxy in proxies:
            proxy.set_mode(PASS)
        if stack is not None:
            await stack.stop()
        for proxy in proxies:
            await proxy.stop()
        await nats.stop()


class LinkFault:
    """A harness fault on one link: ``mode`` for ``hold_s`` seconds then back to pass, or,
    with ``mode=None``, :meth:`~tests.support.faultproxy.FaultProxy.freeze_open` (the open
    connections go silent for good, new ones pass).

    :attr:`new_connections` tells whether the clients noticed: connections opened through
    the link since the fault began.
    """

    def __init__(self, links: Links, name: LinkName, mode: Mode | None, hold_s: float) -> None:
        self.proxy = links.proxy(name)
        self.mode, self.hold_s = mode, hold_s
        self._accepted_before: int | None = None

    @property
    def new_connections(self) -> int:
        if self._accepted_before is None:
            raise RuntimeError("the fault was never injected")
        return self.proxy.accepted - self._accepted_before

    async def __call__(self, _stack: Stack) -> float:
        self._accepted_before = self.proxy.accepted
        if self.mode is None:
            self.proxy.freeze_open()
            return time.monotonic()
        self.proxy.set_mode(self.mode)
        try:
            await asyncio.sleep(self.hold_s)  # the fault itself
        finally:
            self.proxy.set_mode(PASS)
        return time.monotonic()
