"""The WebSocket connection driven with byte fixtures over a recording transport.

The frame layer is websockets' own; these tests pin what our side adds: reading on a
budget (slices, pauses), a write cap that cuts once, closes that never wait, and messages
reassembled from fragments.
"""

from __future__ import annotations

import asyncio

import pytest

from chat_gateway.carrier import Limit
from chat_gateway.edge.budget import ReadBudget
from chat_gateway.edge.websocket import WebSocket
from tests.support.rawws import CLOSE, PING, TEXT, frame


class Transport:
    """Records what a WebSocket does to its transport; the kernel side is a number."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.backlog = 0
        """Bytes the (imaginary) kernel did not take: what get_write_buffer_size reports."""
        self.paused = False
        self.pauses = 0
        self.closed = self.aborted = False

    def write(self, data: bytes) -> None:
        self.written += data

    def get_write_buffer_size(self) -> int:
        return self.backlog

    def pause_reading(self) -> None:
        self.paused = True
        self.pauses += 1

    def resume_reading(self) -> None:
        self.paused = False

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True


def _ws(
    transport: Transport, *, budget: ReadBudget | None = None, close_timeout_s: float = 0.05
) -> WebSocket:
    return WebSocket(
        transport,  # type: ignore[arg-type]
        max_size=65536,
        budget=budget,
        close_timeout_s=close_timeout_s,
        write_cap=1000,
    )


def _server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Parse unmasked server frames (payloads under 126 bytes)."""
    frames, pos = [], 0
    while pos < len(data):
        opcode, size = data[pos] & 0x0F, data[pos + 1] & 0x7F
        frames.append((opcode, bytes(data[pos + 2 : pos + 2 + size])))
        pos += 2 + size
    return frames


async def test_messages_arrive_in_order_and_pings_are_answered() -> None:
    """Text frames become str messages; a ping in between gets its pong at once."""
    transport = Transport()
    ws = _ws(transport)
    ws.feed(frame(TEXT, b"one") + frame(PING, b"p") + frame(TEXT, "twö".encode()))
    assert [await ws.recv(), await ws.recv()] == ["one", "twö"]
    assert _server_frames(bytes(transport.written)) == [(0xA, b"p")]


async def test_fragments_are_reassembled_and_bad_utf8_closes_with_1007() -> None:
    """A message in three fragments is one message; invalid UTF-8 ends the stream."""
    transport = Transport()
    ws = _ws(transport)
    ws.feed(frame(TEXT, b"ab", fin=False) + frame(0x0, b"cd", fin=False) + frame(0x0, b"e"))
    assert await ws.recv() == "abcde"
    ws.feed(frame(TEXT, b"\xff\xfe"))
    assert await ws.recv() is None
    (opcode, payload), *_ = _server_frames(bytes(transport.written))
    assert (opcode, int.from_bytes(payload[:2], "big")) == (CLOSE, 1007)


async def test_over_budget_reading_pauses_in_slices() -> None:
    """A flood of pings is parsed a slice at a time; over budget the transport pauses and
    the rest of the bytes wait, unparsed."""
    transport = Transport()
    budget = ReadBudget(rate=10, burst=10, cut_after_s=60)
    ws = _ws(transport, budget=budget)
    flood = frame(PING, b"", masked=False) * 10_000  # 60 KB of six-byte frames
    ws.feed(flood)
    assert transport.paused and transport.pauses == 1
    pongs = len(_server_frames(bytes(transport.written)))
    assert 10 < pongs <= 4096 // 6 + 1  # one slice, not the whole flood


async def test_a_write_backlog_cuts_once_and_reports_it_once() -> None:
    """Past the write cap the connection is closed with 4008; the callback hears it once
    however many writes follow, and later writes are refused."""
    transport = Transport()
    ws = _ws(transport)
    limits: list[Limit] = []
    ws.on_limit(limits.append)
    assert ws.write(b"x")
    transport.backlog = 5000
    for _ in range(100):
        ws.write(b"y")
    assert limits == ["overflow"]
    assert not ws.open and not ws.write(b"z")


async def test_close_returns_at_once_and_aborts_a_peer_that_never_answers() -> None:
    """close() sends the close frame and returns; without the peer's answer the TCP
    connection is aborted at the deadline, and a second close() is a no-op."""
    transport = Transport()
    ws = _ws(transport, close_timeout_s=0.05)
    assert ws.close(4000, "ping timeout") is True
    assert ws.close(4000, "again") is False
    assert _server_frames(bytes(transport.written))[0][0] == CLOSE
    assert not transport.aborted
    await asyncio.sleep(0.1)  # the deadline itself is what is under test
    assert transport.aborted


async def test_a_peer_that_answers_the_close_is_not_aborted() -> None:
    """The closing handshake completes: the transport is closed, the timer disarmed."""
    transport = Transport()
    ws = _ws(transport, close_timeout_s=0.05)
    ws.close(1000)
    ws.feed(frame(CLOSE, (1000).to_bytes(2, "big")))
    assert transport.closed
    ws.lost()
    await asyncio.sleep(0.1)
    assert not transport.aborted
    assert ws.close_code_received == 1000 and ws.closed_by_us


@pytest.mark.parametrize("size", [70_000])
async def test_a_message_over_the_limit_closes_with_1009(size: int) -> None:
    """websockets' own size limit applies: the message never reaches the inbox."""
    transport = Transport()
    ws = _ws(transport)
    ws.feed(frame(TEXT, b"a" * size, masked=False))
    assert await ws.recv() is None
    (opcode, payload), *_ = _server_frames(bytes(transport.written))
    assert (opcode, int.from_bytes(payload[:2], "big")) == (CLOSE, 1009)
