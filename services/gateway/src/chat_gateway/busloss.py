"""A gateway that has lost the bus sheds its clients, so they resume on one that has not.

A gateway cut off from NATS (a partition between it and every NATS node, while its clients
still reach it) can neither commit nor deliver: every send fails with ``UNAVAILABLE`` and
nothing arrives. Its readiness is false at once (the ``nats`` check), so a balancer sends no
new clients; the ones it holds would stay, failing, for as long as the partition lasts. So
once the bus has been gone for ``GATEWAY_BUS_LOSS_SHED_S`` the gateway closes every client
with 1012 (service restart: Socket.IO and our clients reconnect and resume their session on
another gateway, nothing missed) and answers new connections 503 until the bus is back.

Clients learn of the loss within NATS's dead-link detection (two missed pings: 2 to 3
``*_NATS_PING_INTERVAL_S``) plus ``GATEWAY_BUS_LOSS_SHED_S``: 7 to 9 s with the defaults.
A short blip (a NATS node restarting, the client reconnecting to another node) is under the
threshold and sheds nobody.

:class:`BusLoss` is the decision (pure); :func:`watch_bus` the loop around it.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable

__all__ = ["BusLoss", "Step", "watch_bus"]

_log = logging.getLogger("chat.gateway.busloss")


class Step(enum.Enum):
    STEADY = "steady"
    SHED = "shed"
    """The bus has been gone long enough: close every client, refuse new ones."""
    REOPEN = "reopen"
    """The bus is back after a shedding: take new clients again."""


class BusLoss:
    """When to shed, from the bus's connected state observed over time."""

    def __init__(self, *, shed_after_s: float) -> None:
        self.shed_after_s = shed_after_s
        self._lost_at: float | None = None
        self.shed = False
        """Clients were shed and the bus is not back yet."""

    def observe(self, connected: bool, now: float) -> Step:
        if connected:
            self._lost_at = None
            if self.shed:
                self.shed = False
                return Step.REOPEN
            return Step.STEADY
        if self._lost_at is None:
            self._lost_at = now
        if not self.shed and now - self._lost_at >= self.shed_after_s:
            self.shed = True
            return Step.SHED
        return Step.STEADY


async def watch_bus(
    connected: Callable[[], bool],
    loss: BusLoss,
    *,
    shed: Callable[[], Awaitable[int]],
    reopen: Callable[[], None],
    tick_s: float = 0.25,
) -> None:
    """Observe the bus every ``tick_s`` until cancelled; shed and reopen as :class:`BusLoss`
    says."""
    loop = asyncio.get_running_loop()
    while True:
        step = loss.observe(connected(), loop.time())
        if step is Step.SHED:
            _log.warning("bus lost: shedding every client", extra={"after_s": loss.shed_after_s})
            closed = await shed()
            _log.warning("bus lost: clients shed", extra={"clients": closed})
        elif step is Step.REOPEN:
            _log.info("bus back: taking clients again")
            reopen()
        await asyncio.sleep(tick_s)
