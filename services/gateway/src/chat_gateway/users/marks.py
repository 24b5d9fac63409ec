"""Read marks, coalesced: however often a client marks, one write at a time per (user,
room) at this gateway.

The first mark of a (user, room) is written at once. Marks that arrive while it is being
written wait for the next write, which carries the largest of them; each is answered with
the state that write left (history keeps the watermark monotonic: an older mark never moves
it back). So a client marking on every message costs at most one write per round trip to
history, and an isolated mark costs no delay.

A mark beyond the room's last message is refused (``INVALID_ARGUMENT``) and changes
nothing: history does not apply a mark beyond the head, and the state it answers says
where the head is. When the largest mark of a group was such a mark, the others (those
within the head) are written again without it, so one bad mark in a group cannot fail the
others, nor move the watermark further than they ask.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from chat_common.chatstate import MarkReadRequest, ReadMark, ReadState
from chat_common.errors import ChatError, InvalidArgument, Unavailable
from chat_gateway.metrics import READ_MARK_WRITES
from chat_gateway.users.state import ChatState

__all__ = ["ReadMarks", "Turn"]


class Turn:
    """A mark's turn among its connection's marks, taken when the mark arrives: it enters
    the coalescer only once the marks sent before it have (admission may reorder pipelined
    events), so a connection's marks form groups in the order sent, and its acks, written in
    that order, never show the watermark going back."""

    __slots__ = ("_before", "_entered")

    def __init__(self, before: asyncio.Future[None] | None) -> None:
        self._before = before
        self._entered: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def wait(self) -> None:
        """Until the marks sent before this one have entered (or were refused)."""
        if self._before is not None:
            await asyncio.shield(self._before)

    def entered(self) -> None:
        """This mark entered the coalescer, or will never (refused, failed): the next goes."""
        if not self._entered.done():
            self._entered.set_result(None)


@dataclass(slots=True)
class _Pending:
    waiters: list[tuple[int, asyncio.Future[ReadState]]] = field(default_factory=list)
    writing: bool = False


class ReadMarks:
    """Writes read marks through ``state`` (see the module docstring)."""

    def __init__(self, state: ChatState) -> None:
        self._state = state
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_turns: dict[str, Turn] = {}
        self.writes = 0
        """Writes sent so far (for tests and metrics)."""

    def turn(self, connection: str) -> Turn:
        """The next turn of ``connection``'s marks (taken in arrival order)."""
        before = self._last_turns.get(connection)
        turn = self._last_turns[connection] = Turn(before._entered if before else None)

        def forget(_: asyncio.Future[None]) -> None:
            if self._last_turns.get(connection) is turn:
                del self._last_turns[connection]

        turn._entered.add_done_callback(forget)
        return turn

    async def mark(
        self, user_id: str, room_id: str, seq: int, *, turn: Turn | None = None
    ) -> ReadState:
        """Mark ``room_id`` read up to ``seq`` for ``user_id`` (after the marks before
        ``turn``); the state after the write that carried it. Raises ``NOT_MEMBER``,
        ``INVALID_ARGUMENT`` (beyond the head) or what the write raised (``UNAVAILABLE``:
        retrying is safe)."""
        if turn is not None:
            await turn.wait()
        future = self._enter(user_id, room_id, seq)
        if turn is not None:
            turn.entered()
        return await asyncio.shield(future)

    def _enter(self, user_id: str, room_id: str, seq: int) -> asyncio.Future[ReadState]:
        key = (user_id, room_id)
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _Pending()
        future: asyncio.Future[ReadState] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)  # answered even if its asker has gone
        pending.waiters.append((seq, future))
        if not pending.writing:
            pending.writing = True
            task = asyncio.create_task(self._write(key, pending), name="read-marks")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return future

    async def _write(self, key: tuple[str, str], pending: _Pending) -> None:
        user_id, room_id = key
        try:
            while pending.waiters:
                waiters, pending.waiters = pending.waiters, []
                seq = max(s for s, _ in waiters)
                self.writes += 1
                READ_MARK_WRITES.inc()
                try:
                    reply = await self._state.mark_read(
                        MarkReadRequest(user_id=user_id, marks=[ReadMark(room_id=room_id, seq=seq)])
                    )
                    result = reply.results[0]
                    if result.error is not None:
                        raise ChatError(result.error.code, result.error.message)
                    assert result.state is not None
                    state = result.state
                except Exception as exc:
                    for _, future in waiters:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                valid = []
                for wanted, future in waiters:
                    if wanted <= state.last_seq:
                        valid.append((wanted, future))
                    elif not future.done():
                        future.set_exception(
                            InvalidArgument("seq is beyond the room's last message")
                        )
                if seq > state.last_seq and any(s > state.read_seq for s, _ in valid):
                    # The write carried a bad mark, so it moved nothing: the good ones go
                    # again, first, in the next write.
                    pending.waiters = valid + pending.waiters
                    continue
                for _, future in valid:
                    if not future.done():
                        future.set_result(state)
        finally:
            pending.writing = False
            for _, future in pending.waiters:  # cancelled while marks waited: answer them
                if not future.done():
                    future.set_exception(Unavailable("read mark not written"))
            pending.waiters.clear()
            if self._pending.get(key) is pending:
                del self._pending[key]

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _retrieve(future: asyncio.Future[ReadState]) -> None:
    if not future.cancelled():
        future.exception()
