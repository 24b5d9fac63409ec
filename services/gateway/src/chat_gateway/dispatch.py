"""The gateway's :class:`~chat_gateway.connection.dispatcher.Dispatcher`: the error boundary
of every client event.

:meth:`EventDispatcher.dispatch` admits an event (authenticated first, then within the
connection's and the user's rate limits), runs its handler (:mod:`chat_gateway.events`)
inside a span, and encodes the outcome in the client's protocol: whatever happens, the
client gets an ack ``{ok: false, error: {code, message}}`` (or an ``error`` event when it
asked for no ack) and the connection stays up. Unexpected exceptions are logged and
answered with ``INTERNAL``; their details never reach the client. Connecting and leaving
are the :class:`~chat_gateway.doorway.Doorway`'s.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from chat_common.boundary import guarded
from chat_common.errors import ChatError, ErrorCode
from chat_common.schemas import encode
from chat_common.tracing import SpanKind, tracer
from chat_gateway.appends.batcher import AppendBatcher
from chat_gateway.appends.plan import Slot
from chat_gateway.changeevents import CHANGE_EVENTS
from chat_gateway.connection.client import Client
from chat_gateway.connection.dispatcher import AnswerFrame, Connected, Place, Resume
from chat_gateway.doorway import Doorway
from chat_gateway.events import Handler, Incoming, Result
from chat_gateway.metrics import EVENTS, RATE_LIMITED
from chat_gateway.protocol.messages import BadEvent, ClientEvent
from chat_gateway.userlimit import UserLimiter
from chat_gateway.users.marks import ReadMarks, Turn

__all__ = ["EventDispatcher"]

_tracer = tracer("chat.gateway")
_APPENDS = frozenset({"send_message"}) | CHANGE_EVENTS
"""Events that append: they take their place in the sender's order on arrival."""
_MARKS = frozenset({"mark_read"})
"""Events that take a turn on arrival, so that they reach the coalescer in the order sent."""
_PIPELINED = _APPENDS | _MARKS
"""Events that may run while others of the connection are in flight (answered in order)."""
_OWN_USER_BOUND = frozenset({"typing"})
"""Events with their own per-user bound at the gateway, not charged to the shared bucket
(a session round trip whenever the lease lapses; typing would eat the user's messages)."""


class EventDispatcher:
    """Admits, runs and answers client events; see the module docstring."""

    def __init__(
        self,
        table: Mapping[str, Handler],
        doorway: Doorway,
        *,
        appender: AppendBatcher,
        marks: ReadMarks,
        users: UserLimiter,
    ) -> None:
        self._table = dict(table)
        self._doorway = doorway
        self._appender = appender
        self._marks = marks
        self._users = users

    def pipelined(self, event: ClientEvent | BadEvent) -> bool:
        return isinstance(event, ClientEvent) and event.name in _PIPELINED

    def reserve(self, client: Client, event: ClientEvent | BadEvent) -> Place | None:
        if isinstance(event, ClientEvent) and event.name in _APPENDS:
            return self._appender.reserve(client.connection_key)
        if isinstance(event, ClientEvent) and event.name in _MARKS:
            return self._marks.turn(client.connection_key)
        return None

    async def dispatch(
        self, client: Client, event: ClientEvent | BadEvent, *, slot: Place | None = None
    ) -> AnswerFrame:
        try:
            return await self._dispatch(client, event, slot)
        finally:
            if isinstance(slot, Turn):
                slot.entered()  # a no-op once the mark entered; else the next may go
            elif isinstance(slot, Slot):
                self._appender.cancel(slot)  # a no-op once the append went out

    async def _dispatch(
        self, client: Client, event: ClientEvent | BadEvent, slot: Place | None
    ) -> AnswerFrame:
        if isinstance(event, BadEvent):
            error = ChatError(event.code, event.message)
            EVENTS.labels("malformed", error.code.value).inc()
            return _error_answer(client, event.event, event.ack_id, error)
        received = time.perf_counter()
        handler = self._table.get(event.name)
        label = event.name if handler else "unknown"
        refusal = await self._admission(client, event.name)
        if refusal is not None:
            EVENTS.labels(label, refusal.code.value).inc()
            return _error_answer(client, event.name, event.ack_id, refusal)
        with _tracer.start_as_current_span(
            f"chat {label}",
            kind=SpanKind.SERVER,
            attributes=lambda: _attributes(label, event, client, received),
        ):
            if handler is None:
                outcome: Result | ChatError = ChatError(ErrorCode.UNKNOWN_EVENT, "unknown event")
            else:
                incoming = Incoming(
                    client,
                    event.data,
                    slot if isinstance(slot, Slot) else None,
                    slot if isinstance(slot, Turn) else None,
                )
                outcome = await guarded(
                    lambda: handler(incoming),
                    what="client event",
                    log_extra={"client_event": event.name, "client": client.session.socket_id},
                )
            if isinstance(outcome, ChatError):
                EVENTS.labels(label, outcome.code.value).inc()
                return _error_answer(client, event.name, event.ack_id, outcome)
        EVENTS.labels(label, "OK").inc()
        if event.ack_id is None:
            return AnswerFrame(None, outcome.then)
        body = outcome.body if isinstance(outcome.body, bytes) else encode(outcome.body)
        return AnswerFrame(client.encode_ack(event.ack_id, body), outcome.then, label, received)

    async def _admission(self, client: Client, name: str) -> ChatError | None:
        """Authentication first (with a verifier, an authenticated connection has an
        identity, kept while it closes), then the connection's rate limit, then the user's."""
        if not self._doorway.dev_mode and client.identity is None and name != "auth":
            return ChatError(ErrorCode.UNAUTHENTICATED, "authenticate first")
        wait = client.bucket.take()
        if wait > 0:
            RATE_LIMITED.inc()
            return ChatError(
                ErrorCode.RATE_LIMITED,
                "too many events; slow down",
                retry_after_ms=int(wait * 1000) + 1,
            )
        user = client.identity.email if client.identity else client.session.email
        if name in _OWN_USER_BOUND:
            return None
        if user is not None and (refusal := await self._users.admit(user)) is not None:
            RATE_LIMITED.inc()
            return refusal
        return None

    def refuse_closing(self, client: Client, event: ClientEvent | BadEvent) -> AnswerFrame:
        """An event that arrived after shutdown began: ``UNAVAILABLE``, retry elsewhere."""
        name = event.name if isinstance(event, ClientEvent) else event.event
        error = ChatError(ErrorCode.UNAVAILABLE, "server restarting; retry after reconnecting")
        return _error_answer(client, name, event.ack_id, error)

    async def connect(
        self, client: Client, *, token: object, resume: Resume | None, offsets: bool
    ) -> Connected:
        return await self._doorway.connect(client, token=token, resume=resume, offsets=offsets)

    def open_native(self, client: Client, authorization: str) -> bool:
        return self._doorway.open_native(client, authorization)

    async def disconnected(self, client: Client, *, resumable: bool) -> None:
        await self._doorway.disconnected(client, resumable=resumable)


def _attributes(
    label: str, event: ClientEvent, client: Client, received: float
) -> dict[str, str | float]:
    """The attributes of a client event's span (built only when it records); the time the
    admission took (rate limits) is its own, as the span starts after it."""
    attributes: dict[str, str | float] = {
        "chat.event": label,
        "chat.protocol": client.protocol,
        "chat.admission_ms": round((time.perf_counter() - received) * 1e3, 3),
    }
    if isinstance(event.data, dict) and isinstance(room := event.data.get("roomId"), str):
        attributes["chat.room"] = room[:64]
    return attributes


def _error_answer(
    client: Client, name: str | None, ack_id: int | None, error: ChatError
) -> AnswerFrame:
    if ack_id is not None:
        body = {"ok": False, "error": error.to_dict()}
        return AnswerFrame(client.encode_ack(ack_id, encode(body)))
    event = {**error.to_dict(), "event": name}
    return AnswerFrame(client.encode_event("error", encode(event)))
