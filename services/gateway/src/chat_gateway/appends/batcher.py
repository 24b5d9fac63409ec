"""Appends to history in batches: one NATS request per event-loop turn, not one per message.

Connections reserve their place when an event arrives and fill it once the event passed
its checks (:mod:`chat_gateway.appends.plan` decides what goes out when). Whatever is ready
at the end of a loop turn leaves in one ``chat.history.append_batch`` request, which
history commits in one transaction; each sender gets its own item's outcome: the stored
message's JSON (the very bytes the room's members receive) or its error.

At most ``max_in_flight`` requests (default one) are out at once: while they are, new
appends wait and leave together in the next one, so batches grow with the load and cost
nothing when it is light (as history's group commit does). A request out for longer than
50 ms (a frozen history instance, a retry) stops holding the next one back.

A request that fails as a whole with ``UNAVAILABLE`` is retried (history keys each item by
its sender and ``clientMsgId``, so a retry stores nothing twice), within the retry policy's
deadline; then its senders get the error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from opentelemetry import trace
from opentelemetry.trace import Link

from chat_common.errors import ChatError, ErrorCode
from chat_common.schemas import AppendRequest, AppendResult, encode
from chat_common.tracing import tracer
from chat_gateway.appends.plan import AppendPlan, Slot

__all__ = ["AppendBatcher", "SendBatch"]

SendBatch = Callable[[list[bytes]], Awaitable[list[AppendResult]]]
"""Send encoded :class:`AppendRequest` items; one result per item (retries included)."""

_STALL_S = 0.05
"""A batch out longer than this no longer counts against ``max_in_flight``."""

_log = logging.getLogger("chat.gateway.appender")
_tracer = tracer("chat.gateway.appender")


class _Item:
    __slots__ = ("body", "future", "span")

    def __init__(self, body: bytes, future: asyncio.Future[bytes]) -> None:
        self.body = body
        self.future = future
        self.span = trace.get_current_span().get_span_context()


class AppendBatcher:
    """Collects appends from every connection and sends them in batch requests."""

    def __init__(
        self,
        send: SendBatch,
        *,
        max_in_flight: int = 2,
        max_items: int = 512,
        max_bytes: int = 512 * 1024,
    ) -> None:
        self._send = send
        self._max_in_flight = max_in_flight
        self._plan: AppendPlan[_Item] = AppendPlan(max_items=max_items, max_bytes=max_bytes)
        self._tasks: set[asyncio.Task[None]] = set()
        self._counted: set[int] = set()
        """Batches out that count against ``max_in_flight`` (younger than the stall time)."""
        self._batches = 0
        self._scheduled = False

    def reserve(self, sender: str) -> Slot[_Item]:
        """A place in the order of the connection keyed ``sender`` (call in the order its
        events arrive)."""
        return self._plan.reserve(sender)

    def cancel(self, slot: Slot[_Item]) -> None:
        """The event behind ``slot`` will not append (refused, failed, or cancelled)."""
        self._plan.cancel(slot)
        self._schedule()

    async def append(self, slot: Slot[_Item], req: AppendRequest) -> bytes:
        """Store ``req`` in ``slot``'s place; its message's JSON once committed."""
        body = encode(req)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._plan.fill(slot, _Item(body, future), len(body))
        self._schedule()
        return await future

    async def drain(self) -> None:
        """Wait for the batches in flight (shutdown)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        while len(self._counted) < self._max_in_flight and (batch := self._plan.take()):
            self._batches += 1
            number = self._batches
            self._counted.add(number)
            asyncio.get_running_loop().call_later(_STALL_S, self._stalled, number)
            task = asyncio.create_task(self._run(batch, number), name="append-batch")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _stalled(self, number: int) -> None:
        """A batch out for longer than usual (a frozen history instance, a retry) stops
        holding the others back."""
        if number in self._counted:
            self._counted.discard(number)
            self._schedule()

    async def _run(self, batch: list[Slot[_Item]], number: int) -> None:
        items = [slot.item for slot in batch if slot.item is not None]
        parent = trace.set_span_in_context(trace.NonRecordingSpan(items[0].span))
        try:
            with _tracer.start_as_current_span(
                "history.append_batch",
                context=parent,
                links=lambda: [Link(item.span) for item in items[1:] if item.span.is_valid],
                attributes=lambda: {"chat.batch.size": len(items)},
            ):
                results = await self._send([item.body for item in items])
            if len(results) != len(items):
                raise ChatError(ErrorCode.INTERNAL, "history answered a batch partly")
            for item, result in zip(items, results, strict=True):
                if item.future.done():
                    continue
                if (stored := result.stored) is not None:
                    item.future.set_result(stored)
                elif result.error is not None:
                    item.future.set_exception(ChatError(result.error.code, result.error.message))
                else:
                    item.future.set_exception(ChatError(ErrorCode.INTERNAL, "internal error"))
        except Exception as exc:
            if not isinstance(exc, ChatError):
                _log.error("append batch failed", exc_info=exc)
                exc = ChatError(ErrorCode.INTERNAL, "internal error")
            for item in items:
                if not item.future.done():
                    item.future.set_exception(
                        ChatError(exc.code, exc.message, retry_after_ms=exc.retry_after_ms)
                    )
        finally:
            self._counted.discard(number)
            self._plan.done(batch)
            if self._plan.ready():
                self._schedule()
