"""The messages a client sent, waiting for its connection's task (pure asyncio).

Both carriers keep one: a WebSocket's frames and a long-polling session's POSTed packets
alike. One reader parks in :meth:`Inbox.wait` until :meth:`Inbox.wake` (a message arrived,
or the carrier is closing); a wake with nobody waiting is dropped, because the reader looks
at the inbox before it waits.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable

__all__ = ["Inbox"]


class Inbox:
    """A queue of messages with one waiting reader, and the size of what it holds."""

    __slots__ = ("_items", "_loop", "_size", "_waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._items: deque[str | bytes] = deque()
        self._size = 0
        self._waiter: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self._items)

    @property
    def size(self) -> int:
        """Characters (text) and bytes (binary) held: close enough for a bound."""
        return self._size

    def put(self, message: str | bytes) -> None:
        self._items.append(message)
        self._size += len(message)
        self.wake()

    def extend(self, messages: Iterable[str | bytes]) -> None:
        for message in messages:
            self._items.append(message)
            self._size += len(message)
        self.wake()

    def take(self) -> str | bytes | None:
        """The oldest message, or ``None`` when there is none."""
        if not self._items:
            return None
        message = self._items.popleft()
        self._size -= len(message)
        return message

    def clear(self) -> None:
        self._items.clear()
        self._size = 0

    async def wait(self) -> None:
        """Park until :meth:`wake`."""
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
