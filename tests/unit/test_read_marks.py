"""The gateway's read marks (``chat_gateway.users.marks``) over the real in-memory chat state
store, with the writes held at a gate so that marks arriving meanwhile form one group."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from chat_common.chatstate import MarkReadRequest, MarkReadResponse, ReadState
from chat_common.errors import ChatError, ErrorCode
from chat_gateway.users.marks import ReadMarks
from chat_gateway.users.state import ChatState
from chat_history.memorystate import InMemoryChatStateStore
from chat_history.memorystore import InMemoryMessageStore
from chat_history.store import NewAppend
from tests.contracts.message_store import T0

ANN = "user-ann"


class GatedHistory:
    """History's ``mark_read`` on an in-memory store; each write waits for ``gate``."""

    def __init__(self) -> None:
        self.messages = InMemoryMessageStore()
        self.state = InMemoryChatStateStore(self.messages)
        self.gate = asyncio.Event()
        self.gate.set()
        self.writes: list[int] = []
        """The seq each write carried."""

    async def room(self, room_id: str, messages: int) -> None:
        await self.state.join(ANN, "ann@example.com", room_id, now=T0)
        appends = [NewAppend(room_id, f"k{i}", f"id{i}", "b@example.com", "t", True, "b@example.com")
                   for i in range(messages)]  # fmt: skip
        await self.messages.append_batch(appends, T0)

    async def mark_read(self, req: MarkReadRequest) -> MarkReadResponse:
        self.writes.append(req.marks[0].seq)
        await self.gate.wait()
        return (await self.state.mark_read(req.user_id, req.marks, now=T0)).result

    async def read_seq(self, room_id: str) -> int:
        (room,) = (await self.state.user_rooms(ANN, limit=10)).rooms
        return room.read_seq


async def _outcome(task: asyncio.Task[ReadState]) -> Any:
    try:
        return (await task).read_seq
    except ChatError as exc:
        return exc.code


async def test_a_mark_beyond_the_head_is_refused_and_moves_nothing() -> None:
    """Alone, a mark past the room's last message is INVALID_ARGUMENT and the watermark
    stays where it was."""
    history = GatedHistory()
    await history.room("r", 5)
    marks = ReadMarks(cast(ChatState, history))
    assert (await marks.mark(ANN, "r", 2)).read_seq == 2
    with pytest.raises(ChatError) as info:
        await marks.mark(ANN, "r", 6)
    assert info.value.code is ErrorCode.INVALID_ARGUMENT
    assert await history.read_seq("r") == 2


async def test_a_bad_mark_in_a_group_neither_fails_nor_moves_the_others() -> None:
    """Marks that wait behind a write go together; when the largest of them is beyond the
    head, it alone is refused and the others are written without it: the watermark ends
    at the largest good mark, not at the head."""
    history = GatedHistory()
    await history.room("r", 10)
    marks = ReadMarks(cast(ChatState, history))
    history.gate.clear()
    first = asyncio.create_task(marks.mark(ANN, "r", 1))
    await asyncio.sleep(0)  # the first write is out, held at the gate
    group = [asyncio.create_task(marks.mark(ANN, "r", s)) for s in (4, 99, 3)]
    await asyncio.sleep(0)
    history.gate.set()
    outcomes = [await _outcome(t) for t in (first, *group)]
    assert outcomes == [1, 4, ErrorCode.INVALID_ARGUMENT, 4]
    assert history.writes == [1, 99, 4]
    assert await history.read_seq("r") == 4


async def test_a_group_of_only_bad_marks_costs_one_write() -> None:
    """When every mark of a group is beyond the head, they are all refused after one
    write that moved nothing."""
    history = GatedHistory()
    await history.room("r", 3)
    marks = ReadMarks(cast(ChatState, history))
    history.gate.clear()
    first = asyncio.create_task(marks.mark(ANN, "r", 2))
    await asyncio.sleep(0)
    group = [asyncio.create_task(marks.mark(ANN, "r", s)) for s in (7, 2**62)]
    await asyncio.sleep(0)
    history.gate.set()
    outcomes = [await _outcome(t) for t in (first, *group)]
    assert outcomes == [2, ErrorCode.INVALID_ARGUMENT, ErrorCode.INVALID_ARGUMENT]
    assert history.writes == [2, 2**62]
    assert await history.read_seq("r") == 2


async def test_turns_keep_a_connections_marks_in_the_order_sent() -> None:
    """A connection's marks take turns on arrival: a later mark whose handler gets to the
    coalescer first (admission can reorder pipelined events) waits for the earlier one, so
    it is never written before it, and its ack is never below the earlier one's mark."""
    history = GatedHistory()
    await history.room("r", 30)
    marks = ReadMarks(cast(ChatState, history))
    history.gate.clear()
    held = asyncio.create_task(marks.mark(ANN, "r", 1))  # a write in flight, at the gate
    await asyncio.sleep(0)
    first, second = marks.turn("conn"), marks.turn("conn")
    late = asyncio.create_task(marks.mark(ANN, "r", 5, turn=second))
    await asyncio.sleep(0)
    assert history.writes == [1]  # the second mark waits for the first's turn
    early = asyncio.create_task(marks.mark(ANN, "r", 20, turn=first))
    history.gate.set()
    assert [await _outcome(t) for t in (held, early, late)] == [1, 20, 20]
    assert history.writes[:2] == [1, 20]  # 5 after 20 (alone, or not written at all)


async def test_a_turn_refused_before_the_coalescer_lets_the_next_go() -> None:
    """A mark refused before it entered (rate limited, malformed) ends its turn, and the
    marks sent after it go on."""
    history = GatedHistory()
    await history.room("r", 9)
    marks = ReadMarks(cast(ChatState, history))
    refused, next_one = marks.turn("conn"), marks.turn("conn")
    waiting = asyncio.create_task(marks.mark(ANN, "r", 7, turn=next_one))
    await asyncio.sleep(0)
    assert not waiting.done()
    refused.entered()
    assert await _outcome(waiting) == 7
