"""Keeping connections honest: the heartbeat and the connection watchdog.

Both loops serve every client at once, so neither ever waits for one: closing is
:meth:`~chat_gateway.connection.client.Client.close` (a close and a deadline, then an abort),
and a pass only writes and schedules.

* **Heartbeat**: each client is pinged ``pingInterval`` after it opened and after each ping
  (Engine.IO pings for Socket.IO, WebSocket pings for ``/ws``), and closed (4000)
  ``pingTimeout`` after a ping it has not answered, as the reference server does.
* **Watchdog**, once a second: closes connections whose token expired (4003), that did not
  connect or authenticate in time, or that never joined a room (4002).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque

from chat_gateway.closecodes import (
    CLOSE_HANDSHAKE_TIMEOUT,
    CLOSE_PING_TIMEOUT,
    CLOSE_TOKEN_EXPIRED,
)
from chat_gateway.connection.client import Client, State
from chat_gateway.registry import ClientRegistry
from chat_gateway.sessionids import Hold
from chat_gateway.settings import GatewaySettings

__all__ = ["Keepalive"]

_PING_WINDOW_S = 0.05
"""Pings due within this much of each other go out together (a few wake-ups per second)."""


class Keepalive:
    """The heartbeat and the watchdog over a :class:`~chat_gateway.registry.ClientRegistry`."""

    def __init__(self, registry: ClientRegistry, settings: GatewaySettings) -> None:
        self._registry = registry
        self._s = settings
        self._interval = settings.ping_interval_ms / 1000
        self._ping_queue: deque[tuple[float, Client]] = deque()
        """(when its next ping is due, client), in due order: each client is pinged
        pingInterval after it opened, then after its last ping (:meth:`heartbeat`)."""
        registry.on_add(self._schedule)

    def _schedule(self, client: Client) -> None:
        self._ping_queue.append((asyncio.get_running_loop().time() + self._interval, client))

    async def watch(self) -> None:
        """The watchdog loop (a supervised task)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(1.0)
            self.check(now=loop.time(), wall=time.time())

    def check(self, *, now: float, wall: float) -> None:
        """One watchdog pass at loop time ``now`` and epoch time ``wall``."""
        s = self._s
        for client in self._registry:
            if client.closing:
                continue
            age = now - client.opened_at
            identity = client.identity
            if identity is not None and identity.expires_at + s.jwt_leeway_s < wall:
                client.close(CLOSE_TOKEN_EXPIRED, "token expired")
            elif client.state is State.CONNECTING and age > s.connect_timeout_s:
                client.close(CLOSE_HANDSHAKE_TIMEOUT, "connect or authenticate first")
            elif client.session.hold is Hold.NONE and age > s.join_timeout_s:
                client.close(CLOSE_HANDSHAKE_TIMEOUT, "join a room first")

    async def heartbeat(self) -> None:
        """The heartbeat loop (a supervised task).

        Clients are pinged in the order they fall due (one queue: every ping is due one
        interval after the previous one, so appending keeps it sorted), a few milliseconds'
        worth at a time, so 10,000 connections cost a trickle of pings rather than one pass
        that holds the event loop while every pong comes back at once."""
        interval, timeout = self._interval, self._s.ping_timeout_ms / 1000
        window = min(interval / 50, _PING_WINDOW_S)
        loop = asyncio.get_running_loop()
        queue = self._ping_queue
        checks: dict[int, asyncio.TimerHandle] = {}
        batches = itertools.count()

        def expire(key: int, pinged_at: float, batch: list[Client]) -> None:
            del checks[key]
            for client in batch:
                if client.last_pong < pinged_at and client in self._registry and not client.closing:
                    client.close(CLOSE_PING_TIMEOUT, "ping timeout")

        try:
            while True:
                # Up to one window early: the batch takes whatever falls due within it.
                await asyncio.sleep(
                    max(0.0, queue[0][0] - window - loop.time()) if queue else interval
                )
                now = loop.time()
                batch: list[Client] = []
                while queue and queue[0][0] <= now + window:
                    _, client = queue.popleft()
                    if client in self._registry and not client.closing:
                        client.ping()
                        batch.append(client)
                        queue.append((now + interval, client))
                if batch:
                    key = next(batches)
                    checks[key] = loop.call_later(timeout, expire, key, now, batch)
        finally:
            for pending in checks.values():
                pending.cancel()
