"""How a gateway hears a room's events: one subscription per room it has members in.

:data:`Subscribe` is all the room hub (:mod:`chat_gateway.rooms.hub`) needs of the bus;
:func:`nats_subscriber` gives it over NATS (both of the room's subjects with one
subscription, flushed so the subscription is in place before the join goes on). The
in-process test harness gives it over its in-memory bus.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from nats.aio.client import Client as Nats
from nats.aio.msg import Msg

from chat_common.subjects import room_subjects

__all__ = ["Deliver", "RoomSubscription", "Subscribe", "nats_subscriber"]

Deliver = Callable[[str, bytes, Mapping[str, str] | None], None]
"""Called with each message on a room's subjects: (subject, data, headers)."""


class RoomSubscription(Protocol):
    async def unsubscribe(self) -> None: ...


Subscribe = Callable[[str, Deliver], Awaitable[RoomSubscription]]
"""Subscribe to a room's subjects: (room id, deliver) -> the subscription."""


def nats_subscriber(nc: Nats) -> Subscribe:
    """:data:`Subscribe` over NATS."""

    async def subscribe(room_id: str, deliver: Deliver) -> RoomSubscription:
        async def on_message(msg: Msg) -> None:
            deliver(msg.subject, msg.data, msg.headers)

        subscription = await nc.subscribe(room_subjects(room_id), cb=on_message)
        await nc.flush()
        return subscription

    return subscribe
