"""One connection's events in flight: sends and read marks pipelined, answers in order.

A connection's next ``send_message`` does not wait for the commit of its previous one, nor
its next ``mark_read`` for the write of the one before (so the marks a client sends on every
message coalesce into few writes: :mod:`chat_gateway.users.marks`): up to ``depth`` of them
run at once. Their order still holds end to end:

* each takes its place in the sender's append order when it arrives
  (:meth:`Dispatcher.reserve`), so its messages get seqs in the order sent;
* each writes its answer only after the event before it has written its own, so acks (and
  errors) arrive in the order the events were sent.

Any other event (join, leave, get_history, get_rooms, resume, auth...) is a barrier: it waits until
the events before it have answered, then runs alone, so a ``leave`` never overtakes a
``send_message`` sent before it, nor a ``send_message`` a ``join`` sent before it.
"""

from __future__ import annotations

import asyncio

from chat_gateway.connection.client import Client
from chat_gateway.connection.dispatcher import AnswerFrame, Dispatcher, Place
from chat_gateway.protocol.messages import BadEvent, ClientEvent

__all__ = ["Pipeline"]


class Pipeline:
    """The events of one connection that are being handled."""

    __slots__ = ("_client", "_depth", "_dispatcher", "_last_written", "_running")

    def __init__(self, client: Client, dispatcher: Dispatcher, *, depth: int) -> None:
        self._client = client
        self._dispatcher = dispatcher
        self._depth = max(1, depth)
        self._running: list[asyncio.Task[None]] = []  # a list: an empty deque costs 600 B
        self._last_written: asyncio.Future[None] | None = None

    async def submit(self, event: ClientEvent | BadEvent) -> None:
        """Start handling ``event``; returns once the connection may read its next one."""
        client = self._client
        if client.closing:
            # Shutting down: answer at once (retryable) rather than leave the client waiting.
            await self._in_turn(self._dispatcher.refuse_closing(client, event))
            return
        if not self._dispatcher.pipelined(event):
            await self.drain()
            client.begin_event()
            try:
                answer = await self._dispatcher.dispatch(client, event)
                await answer.write(client)
            finally:
                client.end_event()
            return
        while len(self._running) >= self._depth:
            await asyncio.wait({self._running[0]})
            self._reap()
        slot = self._dispatcher.reserve(client, event)
        before = self._last_written
        written = self._last_written = asyncio.get_running_loop().create_future()
        client.begin_event()
        task = asyncio.create_task(self._pipelined(event, slot, before, written))
        self._running.append(task)
        self._reap()

    async def drain(self) -> None:
        """Wait until every event handed in so far has answered."""
        while self._running:
            await asyncio.wait(set(self._running))
            self._reap()

    async def close(self, *, grace_s: float) -> None:
        """The connection is over: let the events in flight finish for up to ``grace_s``
        (a client that sends, then says goodbye, still has its messages stored, as when
        its events were handled one at a time), then stop the rest. Their answers go
        nowhere; an append already handed to history may still commit, unacknowledged,
        as when a client drops while waiting for its ack."""
        if self._running:
            await asyncio.wait(set(self._running), timeout=grace_s)
        for task in self._running:
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
        self._running.clear()

    async def _pipelined(
        self,
        event: ClientEvent | BadEvent,
        slot: Place | None,
        before: asyncio.Future[None] | None,
        written: asyncio.Future[None],
    ) -> None:
        try:
            answer = await self._dispatcher.dispatch(self._client, event, slot=slot)
            if before is not None:
                await asyncio.shield(before)
            await answer.write(self._client)
        finally:
            if not written.done():
                written.set_result(None)
            self._client.end_event()

    async def _in_turn(self, answer: AnswerFrame) -> None:
        if self._last_written is not None:
            await asyncio.shield(self._last_written)
        await answer.write(self._client)

    def _reap(self) -> None:
        while self._running and self._running[0].done():
            task = self._running.pop(0)
            if not task.cancelled() and (exc := task.exception()) is not None:
                raise exc
