"""What a connection's loop asks of the application: the :class:`Dispatcher` interface.

The loop (:mod:`chat_gateway.connection.loop`) and the pipeline
(:mod:`chat_gateway.connection.pipeline`) only move events and answers; every decision about
an event (who may send it, what it does, what the answer says) is the dispatcher's
(:class:`chat_gateway.dispatch.EventDispatcher` in the gateway, the same one in the
in-process test harness). An event's answer is an :class:`AnswerFrame`: the encoded frame
for this client's protocol, written by the pipeline in the order the events came.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from chat_gateway.connection.client import Client
from chat_gateway.metrics import ACK_SECONDS
from chat_gateway.protocol.messages import BadEvent, ClientEvent

__all__ = [
    "AnswerFrame",
    "Connected",
    "Dispatcher",
    "Place",
    "Resume",
]

Place = object
"""What :meth:`Dispatcher.reserve` hands out: opaque to the connection, which only passes it
back with the event."""


@dataclass(frozen=True, slots=True)
class AnswerFrame:
    """The frame answering one event (``None`` when nothing is written: no ack was asked
    for), what to do once it is written, and for the ack latency metric its label and
    when the event arrived."""

    frame: bytes | None
    then: Callable[[], None] | None = None
    label: str | None = None
    received: float = 0.0

    async def write(self, client: Client) -> None:
        """Write the frame, then run the follow-up."""
        if self.frame is not None:
            await client.send(self.frame)
            if self.label is not None:
                ACK_SECONDS.labels(self.label).observe(time.perf_counter() - self.received)
        if self.then is not None:
            self.then()


@dataclass(frozen=True, slots=True)
class Resume:
    """A session a connecting client asks to carry on, and where it says it is."""

    session_id: str
    token: str
    positions: dict[str, int]
    """room -> the last seq the client has (rooms it does not name: the join position)."""


@dataclass(frozen=True, slots=True)
class Connected:
    """A Socket.IO CONNECT accepted: the rooms a resumed session lost (the token no longer
    allows them), and what to run once the reply is written (the replay of what was
    missed)."""

    dropped: list[str]
    then: Callable[[], None] | None = None


class Dispatcher(Protocol):
    """The application side of a connection."""

    def pipelined(self, event: ClientEvent | BadEvent) -> bool:
        """Whether the event may run while others of its connection are in flight
        (``send_message``, ``mark_read``); any other runs alone."""
        ...

    def reserve(self, client: Client, event: ClientEvent | BadEvent) -> Place | None:
        """A pipelined event's place among its connection's events, taken in arrival order
        (an append's place in the sender's order, a mark's turn to be coalesced), handed
        back to :meth:`dispatch`; ``None`` for an event that needs none."""
        ...

    async def dispatch(
        self, client: Client, event: ClientEvent | BadEvent, *, slot: Place | None = None
    ) -> AnswerFrame:
        """Run one event; whatever happens, the answer to write."""
        ...

    def refuse_closing(self, client: Client, event: ClientEvent | BadEvent) -> AnswerFrame:
        """The answer to an event that arrived after the connection began closing."""
        ...

    async def connect(
        self, client: Client, *, token: object, resume: Resume | None, offsets: bool
    ) -> Connected:
        """A Socket.IO CONNECT: authenticate with ``token`` and, given ``resume``, carry
        the session on; ``offsets`` says whether its messages carry offsets. Raises
        :class:`~chat_common.errors.ChatError` when the token is refused."""
        ...

    def open_native(self, client: Client, authorization: str) -> bool:
        """A native connection opened with this ``Authorization`` header: authenticate it
        when it names a bearer token (or in development mode); ``False`` when refused."""
        ...

    async def disconnected(self, client: Client, *, resumable: bool) -> None:
        """The connection is over (or left the namespace): leave its rooms here, and keep
        its session resumable or end it."""
        ...
