"""History endpoints: ``append`` (durable, idempotent, ordered) and ``fetch`` (pages)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
import msgspec
from nats.aio.client import Client as Nats

from chat_common.errors import InvalidArgument, Unavailable
from chat_common.schemas import (
    AppendRequest,
    FetchRequest,
    FetchResponse,
    RoomEvent,
    encode,
    parse_request,
)
from chat_common.subjects import room_events
from chat_common.tracing import SpanKind, inject_headers, messaging_attributes, tracer
from chat_history import repository
from chat_history.database import Database
from chat_history.writer import TRANSIENT_ERRORS, BatchWriter, Committed

__all__ = ["HistoryHandlers", "publish_committed"]

_tracer = tracer("chat.history")


class HistoryHandlers:
    """The history service's endpoints, independent of how they are served."""

    def __init__(self, db: Database, writer: BatchWriter, *, max_page: int, max_text: int) -> None:
        self._db = db
        self._writer = writer
        self._max_page = max_page
        self._max_text = max_text

    async def append(self, body: bytes) -> bytes:
        req = parse_request(body, AppendRequest)
        if not 1 <= len(req.text) <= self._max_text or not req.client_msg_id:
            raise InvalidArgument("text or clientMsgId out of range")
        message = await self._writer.append(req, client_supplied=req.client_supplied)
        return encode(message)

    async def fetch(self, body: bytes) -> bytes:
        req = parse_request(body, FetchRequest)
        if not 1 <= req.limit <= self._max_page:
            raise InvalidArgument(f"limit must be 1..{self._max_page}")
        try:
            async with self._db.acquire() as conn:
                messages, last = await repository.page(
                    conn,
                    req.room_id,
                    before_seq=req.before_seq,
                    after_seq=req.after_seq,
                    limit=req.limit,
                )
        except TRANSIENT_ERRORS as exc:
            raise Unavailable("message store unavailable") from exc
        except asyncpg.PostgresError as exc:
            raise Unavailable("message store error") from exc
        return encode(FetchResponse(messages=messages, last_seq=last))


def publish_committed(nc: Nats) -> Callable[[list[Committed]], Awaitable[None]]:
    """Fan out committed messages on their rooms' subjects, in seq order, each in its
    sender's trace."""

    async def on_committed(committed: list[Committed]) -> None:
        for item in committed:
            message = item.message
            subject = room_events(message.room_id)
            event = RoomEvent(
                event="new_message",
                data=msgspec.Raw(encode(message)),
                seq=message.seq,
                sent_at=item.received_at,
            )
            with _tracer.start_as_current_span(
                f"send {subject}",
                context=item.ctx,
                kind=SpanKind.PRODUCER,
                attributes=messaging_attributes(subject, "send"),
            ):
                await nc.publish(subject, encode(event), headers=inject_headers() or None)

    return on_committed
