"""The packets waiting for a long-polling client, and the GET waiting for them (asyncio,
no HTTP).

A GET that finds packets waiting takes them all at once; one that finds none is *held*:
it becomes a future, answered as soon as packets are queued (the writes of one loop turn
leave in one answer). A held GET whose client went away is cancelled by the edge; the
packets then wait for the next one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from chat_gateway.edge.answers import HttpAnswer
from chat_gateway.protocol import engineio

__all__ = ["PAYLOAD_TYPE", "Decorate", "PollQueue"]

PAYLOAD_TYPE = "text/plain; charset=UTF-8"
Decorate = Callable[[HttpAnswer], HttpAnswer]
"""What the caller adds to an answer before it goes out (its CORS headers)."""


class PollQueue:
    """Packets for one long-polling client, and its held GET if any."""

    __slots__ = ("_decorate", "_loop", "_packets", "_poll", "_scheduled", "_size")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._packets: list[bytes] = []
        self._size = 0
        self._poll: asyncio.Future[HttpAnswer] | None = None
        self._decorate: Decorate | None = None
        self._scheduled = False

    def __len__(self) -> int:
        return len(self._packets)

    @property
    def size(self) -> int:
        """Bytes of the packets waiting."""
        return self._size

    @property
    def holding(self) -> bool:
        """Whether a GET is held (a cancelled one no longer counts)."""
        if self._poll is not None and self._poll.done():
            self._poll = self._decorate = None  # cancelled, its callback not run yet
        return self._poll is not None

    def put(self, packets: list[bytes]) -> None:
        """Queue packets; a held GET gets them at the end of this loop turn."""
        self._packets += packets
        self._size += sum(len(p) for p in packets)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def take(self) -> list[bytes]:
        """Every packet waiting (the queue is then empty)."""
        packets, self._packets, self._size = self._packets, [], 0
        return packets

    def answer(self) -> HttpAnswer:
        """An answer carrying every packet waiting."""
        return HttpAnswer(200, engineio.encode_payload(self.take()), content_type=PAYLOAD_TYPE)

    def hold(self, decorate: Decorate) -> asyncio.Future[HttpAnswer]:
        """Hold a GET until packets come."""
        poll: asyncio.Future[HttpAnswer] = self._loop.create_future()
        self._poll, self._decorate = poll, decorate
        poll.add_done_callback(self._poll_done)
        return poll

    def _poll_done(self, poll: asyncio.Future[HttpAnswer]) -> None:
        if self._poll is poll:  # cancelled: the client went away, nothing was taken
            self._poll = self._decorate = None

    def flush(self) -> None:
        """Answer a held GET with what is waiting, if anything is."""
        self._scheduled = False
        if self._poll is not None and self._packets:
            self.release(self.answer())

    def release(self, answer: HttpAnswer, *, decorated: bool = True) -> None:
        """Answer a held GET (if one is) with ``answer``, decorated unless told not to."""
        poll, decorate = self._poll, self._decorate
        self._poll = self._decorate = None
        if poll is not None and decorate is not None and not poll.done():
            poll.set_result(decorate(answer) if decorated else answer)
