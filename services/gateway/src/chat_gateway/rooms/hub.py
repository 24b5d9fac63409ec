"""Rooms at one gateway: subscriptions, ordered fan-out, members joining.

A gateway subscribes to a room's subjects while it has members in it
(:mod:`chat_gateway.rooms.feed`; what arrives is decoded by
:mod:`chat_gateway.rooms.fanout`). Events are decoded once, encoded once per protocol,
and written to every member without awaiting each one. A large room's presence changes
(announced without the member list) are held and sent as one ``presence_diff`` per
interval (:mod:`chat_gateway.rooms.presencebatch`). Typing, on the room's third subject, is
the :class:`~chat_gateway.rooms.typingfanout.TypingFanout`'s (paced the same way).

Who gets which event and when (order, gaps, members joining, resuming and leaving) is
decided by the pure :mod:`chat_gateway.rooms.delivery`; this module subscribes, hands what
it decides to the :class:`Writer` (:class:`chat_gateway.rooms.writer.RoomWriter`: by
priority, catching up from history a member that fell behind), and fills the gaps it
reports from history.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

import msgspec
from opentelemetry import trace
from opentelemetry.trace import Link

from chat_common.backoff import Backoff
from chat_common.schemas import FetchResponse, Message, encode
from chat_common.subjects import room_kind, room_subjects
from chat_common.tracing import (
    SpanKind,
    extract_context,
    messaging_attributes,
    sampled,
    tracer,
)
from chat_gateway.connection.client import Client, cut_slow
from chat_gateway.rooms.delivery import Delivery, RoomDelivery
from chat_gateway.rooms.delivery import Member as CoreMember
from chat_gateway.rooms.fanout import (
    NEW_MESSAGE,
    PRESENCE_EVENTS,
    Fanout,
    PresenceData,
    page_item,
    parse_room_event,
)
from chat_gateway.rooms.feed import RoomSubscription, Subscribe
from chat_gateway.rooms.presencebatch import PresenceBatch
from chat_gateway.rooms.typingfanout import Members, TypingFanout

__all__ = ["FillGap", "Member", "RoomHub", "Writer"]

_log = logging.getLogger("chat.gateway.rooms")
_tracer = tracer("chat.gateway.rooms")

_presence_data = msgspec.json.Decoder(PresenceData)
FillGap = Callable[[str, int, int], Awaitable[FetchResponse]]
"""(room_id, after_seq, before_seq) -> messages strictly between them."""
Typing = Callable[[Members[Client]], TypingFanout[Client]]
"""Makes the hub's typing fan-out, given how to find a room's live members."""

Member = CoreMember[Client, Fanout]
"""A client's membership in one room at this gateway (see :mod:`chat_gateway.rooms.delivery`)."""


class Writer(Protocol):
    """Writes deliveries to their clients (:class:`chat_gateway.rooms.writer.RoomWriter`)."""

    def write(self, deliveries: list[Delivery[Client, Fanout]]) -> None: ...

    def forget(self, client: Client, room_id: str) -> None:
        """``client`` left ``room_id``: nothing of it is owed any more."""
        ...


@dataclass(slots=True)
class _Room:
    room_id: str
    delivery: RoomDelivery[Client, Fanout] = field(default_factory=RoomDelivery)
    subscription: RoomSubscription | None = None
    filling: asyncio.Task[None] | None = None
    presence: PresenceBatch | None = None
    """A large room's presence changes waiting for the next ``presence_diff``."""
    presence_flush: asyncio.TimerHandle | None = None


def _live(rooms: dict[str, _Room], room_id: str) -> list[Client]:
    """The room's members here whose join (or resume) has been answered."""
    room = rooms.get(room_id)
    members = room.delivery.members.values() if room is not None else ()
    return [m.client for m in members if m.buffer is None]


class RoomHub:
    """Every room this gateway has members in: subscriptions, writes and gap fills around
    each room's :class:`~chat_gateway.delivery.RoomDelivery`."""

    def __init__(
        self,
        subscribe: Subscribe,
        *,
        writer: Writer,
        fill_gap: FillGap,
        gap_fill_delay_s: float,
        presence_interval_s: float,
        presence_diff_max: int,
        typing: Typing,
    ) -> None:
        self._subscribe = subscribe
        self._write = writer.write
        self._writer = writer
        self._fill_gap = fill_gap
        self._gap_delay = gap_fill_delay_s
        self._presence_interval = presence_interval_s
        self._diff_max = presence_diff_max
        self._rooms: dict[str, _Room] = {}
        self.typing = typing(partial(_live, self._rooms))

    def __len__(self) -> int:
        return len(self._rooms)

    async def add_pending(self, client: Client, room_id: str) -> Member:
        """Make ``client`` a (still buffering) member, subscribing to the room if needed."""
        room = self._rooms.get(room_id)
        if room is None:
            room = self._rooms[room_id] = _Room(room_id)
        member = room.delivery.add(client.connection_key, client)
        if room.subscription is None:
            receive = self.typing.around(room_id, self._receiver(room))
            room.subscription = await self._subscribe(room_subjects(room_id), receive)
        return member

    def activate(self, room_id: str, member: Member, *, join_position: int) -> None:
        """After the join ack: the member has every message up to ``join_position``; deliver what
        came since, then live events (:meth:`RoomDelivery.activate`)."""
        room = self._rooms.get(room_id)
        if room is None:
            return
        member.client.rooms.start_position(room_id, join_position)
        self._write(room.delivery.activate(member, join_position=join_position))
        self.typing.greet(room_id, member.client)

    def replay(
        self, room_id: str, member: Member, messages: list[Message], *, join_position: int
    ) -> None:
        """Resume: write the messages a client missed, then make it a live member."""
        room = self._rooms.get(room_id)
        if room is None:
            return
        member.client.rooms.start_position(room_id, join_position, reset=True)
        missed = [page_item(room_id, m) for m in messages]
        self._write(room.delivery.replay(member, missed, join_position=join_position))

    def suspend(self, client: Client, room_id: str) -> None:
        """Buffer the client's events of this room (while a leave is being recorded)."""
        room = self._rooms.get(room_id)
        if room is not None:
            room.delivery.hold(client.connection_key)

    def unsuspend(self, client: Client, room_id: str) -> None:
        """Undo :meth:`suspend` (the leave failed): what was buffered, then live events."""
        room = self._rooms.get(room_id)
        if room is not None:
            self._write(room.delivery.release(client.connection_key))

    async def remove(self, client: Client, room_id: str) -> None:
        """Drop ``client`` from the room; unsubscribe when it was the last local member."""
        await self.typing.left(client, room_id)
        room = self._rooms.get(room_id)
        if room is None:
            return
        client.rooms.drop_position(room_id)
        self._writer.forget(client, room_id)
        if not room.delivery.remove(client.connection_key):
            return
        del self._rooms[room_id]
        if room.filling is not None:
            room.filling.cancel()
        if room.presence_flush is not None:
            room.presence_flush.cancel()
        if room.subscription is not None:
            try:
                await room.subscription.unsubscribe()
            except Exception as exc:  # connection closing: the subscription dies with it
                _log.debug("unsubscribe failed", extra={"room": room_id, "error": repr(exc)})

    def _receiver(self, room: _Room) -> Callable[[str, bytes, Mapping[str, str] | None], None]:
        def receive(subject: str, data: bytes, headers: Mapping[str, str] | None) -> None:
            items = parse_room_event(room.room_id, room_kind(subject), data)
            if items is None:
                _log.error(
                    "undecodable room event, or on the wrong subject: dropped",
                    extra={"room": room.room_id, "subject": subject},
                )
                return
            if not sampled(headers):  # most messages: no span at all (docs/operations.md)
                for item in items:
                    self.accept(room, item)
                return
            # Fan-out at this gateway: a span in the sender's trace, linked to the send.
            sent = extract_context(headers)
            with _tracer.start_as_current_span(
                f"deliver {room.room_id}",
                context=sent,
                kind=SpanKind.CONSUMER,
                links=lambda: [Link(trace.get_current_span(sent).get_span_context())],
                attributes=lambda: {
                    **messaging_attributes(subject, "process"),
                    "chat.event": items[0].event,
                    "chat.members": len(room.delivery.members),
                    "messaging.batch.message_count": len(items),
                },
            ):
                for item in items:
                    self.accept(room, item)

        return receive

    def accept(self, room: _Room, item: Fanout) -> None:
        """Deliver presence (a large room's coalesced, :meth:`_coalesce`); sequence
        messages and deliver what is in order."""
        if item.seq is None and item.event in PRESENCE_EVENTS and self._coalesce(room, item):
            return
        if item.event == NEW_MESSAGE:  # a typist who sent a message types no more
            self.typing.message(room.room_id, item.sender)
        outcome = room.delivery.offer(item)
        if outcome.overflow:
            _log.error("room backlog overflow; resyncing members", extra={"room": room.room_id})
            for member in list(room.delivery.members.values()):
                cut_slow(member.client)
            return
        self._write(outcome.deliveries)
        if outcome.gap is not None and (room.filling is None or room.filling.done()):
            room.filling = asyncio.create_task(self._fill(room), name=f"fill:{room.room_id}")

    def _coalesce(self, room: _Room, item: Fanout) -> bool:
        """Whether ``item`` (presence) waits for the room's next ``presence_diff``: it does
        when it came without the member list (a large room). An event with the list (the
        room is small again) first sends what was waiting, to keep the order."""
        try:
            change = _presence_data.decode(item.data)
        except msgspec.DecodeError:
            return False
        if change.users is not None:
            self._flush_presence(room)
            return False
        if room.presence is None:
            room.presence = PresenceBatch(max_names=self._diff_max)
        room.presence.add(item.event, change.email, change.count)
        if room.presence_flush is None:
            room.presence_flush = asyncio.get_running_loop().call_later(
                self._presence_interval, self._flush_presence, room
            )
        return True

    def _flush_presence(self, room: _Room) -> None:
        """Send the room's waiting presence changes as one ``presence_diff``."""
        if room.presence_flush is not None:
            room.presence_flush.cancel()
            room.presence_flush = None
        if room.presence and self._rooms.get(room.room_id) is room:
            diff = encode(room.presence.take(room.room_id))
            self._write(
                room.delivery.offer(Fanout(room.room_id, "presence_diff", diff, None)).deliveries
            )

    async def _fill(self, room: _Room) -> None:
        """Wait briefly for stragglers, then fetch what is still missing from history."""
        backoff = Backoff(self._gap_delay, cap_s=2.0, floor_s=0.05, jitter=False)
        delay = backoff.next()
        while (gap := room.delivery.missing()) is not None and room.room_id in self._rooms:
            await asyncio.sleep(delay)
            gap = room.delivery.missing()
            if gap is None:
                return
            try:
                page = await self._fill_gap(room.room_id, gap[0], gap[1])
            except Exception as exc:
                _log.warning("gap fill failed", extra={"room": room.room_id, "error": repr(exc)})
                delay = backoff.next()
                continue
            for message in page.messages:
                self.accept(room, page_item(room.room_id, message))
