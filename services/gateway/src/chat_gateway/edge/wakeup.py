"""A reader's wait for the next inbound packet, shared by both client carriers (pure asyncio)."""

from __future__ import annotations

import asyncio

__all__ = ["Wakeup"]


class Wakeup:
    """One reader parks in :meth:`wait` until :meth:`wake` (a packet arrived, or the carrier
    is closing). A wake with nobody waiting is dropped: the reader checks its inbox before it
    waits."""

    __slots__ = ("_loop", "_waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiter: asyncio.Future[None] | None = None

    async def wait(self) -> None:
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
