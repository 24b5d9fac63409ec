"""Two small things a carrier needs of its transport (asyncio, no protocol): waiting while
the transport is full, and aborting a connection whose peer does not finish closing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from chat_gateway.metrics import CLOSE_ABORTS

__all__ = ["Backpressure", "Deadline", "abort_timer"]


class Backpressure:
    """The transport's flow control: :meth:`drain` waits while it is paused."""

    __slots__ = ("_loop", "_waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiter: asyncio.Future[None] | None = None

    async def drain(self) -> None:
        """Wait until the transport takes writes again (or the connection is gone)."""
        if self._waiter is not None:
            await asyncio.shield(self._waiter)

    def pause(self) -> None:
        if self._waiter is None:
            self._waiter = self._loop.create_future()

    def resume(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class Deadline:
    """One call due at a time, that can be moved or called off."""

    __slots__ = ("_callback", "_handle", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        self._loop = loop
        self._callback = callback
        self._handle: asyncio.TimerHandle | None = None

    def arm(self, delay_s: float, *, keep: bool = False) -> None:
        """Call in ``delay_s`` (instead of when it was due; with ``keep``, only when
        nothing is due yet)."""
        if self._handle is not None:
            if keep:
                return
            self._handle.cancel()
        self._handle = self._loop.call_later(delay_s, self._passed)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _passed(self) -> None:
        self._handle = None
        self._callback()


def abort_timer(loop: asyncio.AbstractEventLoop, transport: asyncio.Transport) -> Deadline:
    """A deadline for a close: when it passes, the TCP connection is aborted (counted)."""

    def abort() -> None:
        CLOSE_ABORTS.inc()
        transport.abort()

    return Deadline(loop, abort)
