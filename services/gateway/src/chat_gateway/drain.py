"""Closing every client: at shutdown, and when an operator drains the gateway.

* **Shutdown** (:meth:`Drain.close_clients`, the lifespan's close-clients phase): each client
  lets its events in flight answer, then is closed with 1012 (it reconnects and resumes
  elsewhere); the phase is over once every connection's task has ended and every
  connection is gone (a peer that does not finish closing is aborted after
  ``GATEWAY_CLOSE_TIMEOUT_S``).
* **Drain** (:meth:`Drain.drain`, the ``drain`` endpoint): readiness false, stop listening,
  then the same 1012 closes in small batches spread evenly over a period
  (:func:`batch_sizes`), so clients reconnect to the other gateways a few at a time; the
  process stays up.
* **Shed** (:meth:`Drain.shed`, when the bus is lost: :mod:`chat_gateway.busloss`): every
  client closed with 1012 at once, so they resume on a gateway that has the bus.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from chat_common.errors import ChatError, ErrorCode
from chat_common.schemas import DrainRequest, DrainResponse, encode, parse_request
from chat_gateway.closecodes import CLOSE_SERVICE_RESTART
from chat_gateway.connection.client import Client
from chat_gateway.registry import ClientRegistry

__all__ = ["DRAIN_TICK_S", "Drain", "batch_sizes"]

_log = logging.getLogger("chat.gateway.drain")

DRAIN_TICK_S = 0.1
"""Closes are never spread finer than this: batches are at least this far apart."""


def batch_sizes(count: int, *, period_s: float, tick_s: float = DRAIN_TICK_S) -> list[int]:
    """Sizes of the batches that close ``count`` clients over ``period_s`` (pure).

    One batch per ``tick_s`` at most and never an empty one; sizes differ by at most one,
    larger first. Batch ``i`` starts at ``i * period_s / len(result)``.
    """
    if count <= 0:
        return []
    batches = max(1, min(count, int(period_s / tick_s + 1e-9)))
    size, extra = divmod(count, batches)
    return [size + 1 if i < extra else size for i in range(batches)]


class Intake(Protocol):
    """What closing needs of the client port (:class:`chat_gateway.port.ClientPort`)."""

    async def stop_accepting(self) -> None: ...

    def cancel_upgrades(self) -> None: ...

    async def connections_ended(self) -> None: ...


class Drain:
    """Closes the clients of a registry, at once or spread over time."""

    def __init__(
        self,
        registry: ClientRegistry,
        port: Intake,
        *,
        instance_id: str,
        grace_s: float,
        on_drain: Callable[[], None] = lambda: None,
    ) -> None:
        self._registry = registry
        self._port = port
        self._instance_id = instance_id
        self._grace_s = grace_s
        self._on_drain = on_drain
        """Called when a drain begins, before anything closes (lowers readiness)."""
        self._draining = False

    async def close_clients(self) -> None:
        """Let each client's events in flight answer, then close it with 1012; wait until
        every connection is gone and its session cleanup has run."""
        self._port.cancel_upgrades()
        clients = list(self._registry)
        await self._restart(clients)
        await self._port.connections_ended()
        # A close is over when the peer has answered it or the close timeout has aborted
        # the TCP connection; exiting sooner would drop what the kernel still holds for it.
        await asyncio.gather(*(c.carrier.wait_closed() for c in clients))

    async def _restart(self, clients: list[Client]) -> None:
        await asyncio.gather(
            *(
                c.shutdown(
                    code=CLOSE_SERVICE_RESTART, reason="service restart", timeout=self._grace_s
                )
                for c in clients
            ),
            return_exceptions=True,
        )

    async def shed(self) -> int:
        """Close every client with 1012 at once, the port still listening (the bus is lost:
        :mod:`chat_gateway.busloss`); returns how many."""
        clients = [c for c in self._registry if not c.closing]
        await self._restart(clients)
        return len(clients)

    async def drain_endpoint(self, body: bytes) -> bytes:
        """The ``drain`` endpoint: readiness false, stop listening, close clients (1012) in
        batches over the period asked for; the process stays up."""
        req = parse_request(body, DrainRequest)
        self._on_drain()
        closed = await self.drain(period_s=req.period_s)
        return encode(
            DrainResponse(instance=self._instance_id, closed=closed, period_s=req.period_s)
        )

    async def drain(self, *, period_s: float) -> int:
        """Stop listening, then close every client with 1012 in small batches spread over
        ``period_s`` (they resume on other gateways); returns how many were closed.

        Readiness is the caller's to lower first.
        """
        if self._draining:
            raise ChatError(ErrorCode.CONFLICT, "this gateway is already draining")
        self._draining = True
        await self._port.stop_accepting()
        pending = [c for c in self._registry if not c.closing]
        sizes = batch_sizes(len(pending), period_s=period_s)
        _log.info("draining", extra={"clients": len(pending), "batches": len(sizes)})
        loop = asyncio.get_running_loop()
        started, closed = loop.time(), 0
        closing: list[asyncio.Future[None]] = []
        for i, size in enumerate(sizes):
            await asyncio.sleep(max(0.0, started + i * period_s / len(sizes) - loop.time()))
            pending = [c for c in pending if c in self._registry and not c.closing]
            if not pending:
                break  # they left, or a shutdown closed them
            last = i == len(sizes) - 1
            batch, pending = (pending, []) if last else (pending[:size], pending[size:])
            # A batch whose events are slow to answer must not hold back the next batch.
            closing.append(asyncio.ensure_future(self._restart(batch)))
            closed += len(batch)
        await asyncio.gather(*closing)
        _log.info("drained", extra={"closed": closed})
        return closed
