"""The NATS client every service uses: nats-py's, writing one loop turn later.

nats-py queues each command and wakes its flusher task, which writes everything queued so
far in one ``writelines``. Woken at once, the flusher usually writes a lone command: a
history instance answers an append in one write and publishes the committed message in
the next, a turn apart. Here the wake-up waits one loop turn (``call_soon``), so what this
turn and the next queue (a reply and its publish, the requests of several connections'
events) leaves in one write. The cost is one loop turn of latency (microseconds); a forced
flush (the pending buffer full, ``flush()``) is not deferred.
"""

from __future__ import annotations

import asyncio
from typing import Any

from nats.aio.client import Client as _NatsClient

__all__ = ["CoalescingClient"]


class CoalescingClient(_NatsClient):
    def __init__(self) -> None:
        super().__init__()
        self._kick_due = False
        self._fallbacks: set[asyncio.Future[Any]] = set()

    async def _flush_pending(self, force_flush: bool = False) -> Any:
        if force_flush or self._flush_queue is None:
            return await super()._flush_pending(force_flush=force_flush)
        if not self._kick_due:
            self._kick_due = True
            asyncio.get_running_loop().call_soon(self._kick)
        return None

    def _kick(self) -> None:
        self._kick_due = False
        queue = self._flush_queue
        flusher = self._flusher_task
        if queue is not None and not queue.empty():
            return  # the flusher is already due
        if queue is None or flusher is None or flusher.done():
            # No flusher to wake (closed, or between reconnects): nats-py's own path.
            fallback = asyncio.ensure_future(super()._flush_pending())
            self._fallbacks.add(fallback)
            fallback.add_done_callback(self._fallbacks.discard)
            return
        queue.put_nowait(asyncio.get_running_loop().create_future())
