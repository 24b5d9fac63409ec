"""Writing a room's deliveries to its members, by priority (thin: the policy is
:class:`~chat_gateway.connection.priority.Priorities`', the catch-up
:class:`~chat_gateway.connection.catchup.CatchUp`'s).

For each member a delivery names: a seq'd event at or below the member's delivered
position is a duplicate (a catch-up page got there first) and is skipped; one of a room the
member is behind in is withheld (kept only while that room's page is in flight); else the
member's queue decides: written, withheld (the member becomes a laggard, caught up from
history by :class:`~chat_gateway.rooms.laggards.Laggards`), presence coalesced (the latest
per room, written once drained), typing dropped.
"""

from __future__ import annotations

import time

from chat_gateway.connection.client import Client
from chat_gateway.connection.priority import Admission, FrameClass, Priorities
from chat_gateway.metrics import DELIVERIES, E2E_SECONDS, FRAMES_SHED
from chat_gateway.rooms.delivery import Delivery
from chat_gateway.rooms.fanout import Fanout
from chat_gateway.rooms.frames import frame_for
from chat_gateway.rooms.laggards import Laggards

__all__ = ["RoomWriter", "frame_class"]

_SEQLESS = {
    "user_joined": FrameClass.PRESENCE,
    "user_left": FrameClass.PRESENCE,
    "presence_diff": FrameClass.PRESENCE,
    "typing": FrameClass.TYPING,
}
_FRAME_OVERHEAD = 64
"""Bytes a frame adds to its event's payload, about (the size estimate of a catch-up page)."""
_SHED = {a: FRAMES_SHED.labels(a.value) for a in Admission if a is not Admission.WRITE}


def frame_class(item: Fanout) -> FrameClass:
    """A room event's class: seq'd events are the room's, the rest presence or typing."""
    if item.seq is not None:
        return FrameClass.ROOM
    return _SEQLESS.get(item.event, FrameClass.PRESENCE)


class RoomWriter:
    """Writes deliveries (see the module docstring)."""

    def __init__(self, priorities: Priorities, laggards: Laggards) -> None:
        self._priorities = priorities
        self.laggards = laggards

    def write(self, deliveries: list[Delivery[Client, Fanout]]) -> None:
        for delivery in deliveries:
            item = delivery.event
            written = 0
            for client in delivery.clients:
                written += self._write_one(item, client)
            DELIVERIES.labels(item.event).inc(written)
            if item.received_at is not None:
                E2E_SECONDS.observe(max(0.0, time.time() - item.received_at))

    def forget(self, client: Client, room_id: str) -> None:
        """``client`` left ``room_id``."""
        self.laggards.forget(client, room_id)

    def _write_one(self, item: Fanout, client: Client) -> bool:
        seq, room_id, lag = item.seq, item.room_id, client.catchup
        if seq is not None:
            position = client.rooms.delivered_positions.get(room_id, 0)
            if seq <= position:
                return False
            if lag is not None and room_id in lag.behind:
                lag.withhold(room_id, item, position=position, size=_size(item))
                return False
        elif lag is not None and room_id in lag.holds_presence:
            lag.hold_presence(room_id, item)  # never overtake what is held
            return False
        admission = self._priorities.admit(frame_class(item), client.queued)
        if admission is Admission.WRITE:
            return client.write_frame(frame_for(item, client))
        _SHED[admission].inc()
        if admission is Admission.WITHHOLD:
            position = client.rooms.delivered_positions.get(room_id, 0)
            self.laggards.lag(client).withhold(room_id, item, position=position, size=_size(item))
        elif admission is Admission.COALESCE:
            self.laggards.lag(client).hold_presence(room_id, item)
        return False


def _size(item: Fanout) -> int:
    return len(item.data) + _FRAME_OVERHEAD
