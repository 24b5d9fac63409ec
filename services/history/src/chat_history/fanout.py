"""Fan-out of committed messages to the rooms' subscribers (the gateways), over NATS."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from itertools import groupby

import msgspec
from opentelemetry import trace
from opentelemetry.trace import Link

from chat_common.natsio import Publisher, publish
from chat_common.schemas import RoomMessage, RoomMessages, encode
from chat_common.subjects import room_events
from chat_history.writer import Committed

__all__ = ["publish_committed"]


def publish_committed(nc: Publisher) -> Callable[[list[Committed]], Awaitable[None]]:
    """Fan out committed messages: one publish per room per commit, carrying the room's
    messages in seq order (each with its sender's user id, when known), as a span in the first sender's trace linked to the others'."""

    async def on_committed(committed: list[Committed]) -> None:
        for room_id, group in groupby(committed, key=lambda c: c.message.room_id):
            items = list(group)
            subject = room_events(room_id)
            event = RoomMessages(
                messages=[
                    RoomMessage(
                        seq=c.message.seq,
                        data=msgspec.Raw(c.raw),
                        received_at=c.received_at,
                        sender=c.sender,
                        kind=c.message.kind,
                        target=c.message.target,
                    )
                    for c in items
                ]
            )
            links = [Link(trace.get_current_span(c.ctx).get_span_context()) for c in items[1:]]
            await publish(
                nc,
                subject,
                encode(event),
                context=items[0].ctx,
                links=links,
                attributes={"messaging.batch.message_count": len(items)},
            )

    return on_committed
