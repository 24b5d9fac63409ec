"""How a gateway hears the bus: one subscription per room it has members in (both of the
room's subjects at once, :func:`chat_common.subjects.room_subjects`), per user it holds
connections of, and per room its inbox followers are members of.

:data:`Subscribe` is all the room hub (:mod:`chat_gateway.rooms.hub`) and the user streams
(:mod:`chat_gateway.users`) need of the bus; :func:`nats_subscriber` gives it over NATS
(flushed, so the subscription is in place before the join goes on). The in-process test
harness gives it over its in-memory bus.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from nats.aio.client import Client as Nats
from nats.aio.msg import Msg

__all__ = ["Deliver", "RoomSubscription", "Subscribe", "nats_subscriber"]

Deliver = Callable[[str, bytes, Mapping[str, str] | None], None]
"""Called with each message on the subscribed subjects: (subject, data, headers)."""


class RoomSubscription(Protocol):
    async def unsubscribe(self) -> None: ...


Subscribe = Callable[[str, Deliver], Awaitable[RoomSubscription]]
"""Subscribe to a subject (wildcards allowed): (subject, deliver) -> the subscription."""


def nats_subscriber(nc: Nats) -> Subscribe:
    """:data:`Subscribe` over NATS."""

    async def subscribe(subject: str, deliver: Deliver) -> RoomSubscription:
        async def on_message(msg: Msg) -> None:
            deliver(msg.subject, msg.data, msg.headers)

        subscription = await nc.subscribe(subject, cb=on_message)
        await nc.flush()
        return subscription

    return subscribe
