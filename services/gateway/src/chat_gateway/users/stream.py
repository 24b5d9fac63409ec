"""Each user's stream at one gateway: one subscription per user it holds connections of.

History publishes what is addressed to a user rather than a room (``read_state``,
``membership``) on ``chat.user.<token>.events``, numbered per user (``userSeq``) without
gaps. Like a room's messages, they are released here strictly in ``userSeq`` order
(:class:`~chat_gateway.rooms.ordering.RoomSequencer`); a hole is filled from history's
copy. Every connection of the user at this gateway gets each event once, with its
``userSeq``; listeners (the inbox, the rooms a membership change concerns) see it first.

A connection joins its user's stream once its user is known: at authentication, or in
development mode at its first ``join`` or ``get_rooms``.

A resumed connection gets its rooms' read state as a snapshot (:meth:`UserStreams.read_states`)
read at the stream's head ``H``, and it must not contradict the stream's events around it:
the snapshot waits until this gateway has released every event up to ``H`` (the older ones
go first; a hole before ``H`` is filled from history at once), and a room whose
``read_state`` this gateway has already released past ``H`` (newer than the snapshot) is
left out of it (:meth:`UserStreams.current`). So a connection's watermarks never go back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from chat_common.backoff import Backoff
from chat_common.chatstate import ReadState, UserEvent, UserEventsRequest, UserRoomsRequest
from chat_common.schemas import MAX_SEQ, encode
from chat_common.subjects import user_events
from chat_gateway.connection.client import Client
from chat_gateway.protocol.wsframe import text_frame
from chat_gateway.rooms.feed import RoomSubscription, Subscribe
from chat_gateway.rooms.ordering import RoomSequencer
from chat_gateway.users.state import ChatState

__all__ = ["Snapshot", "UserListener", "UserStreams", "write_event"]

_log = logging.getLogger("chat.gateway.users")
_event = msgspec.json.Decoder(UserEvent)
_data = msgspec.json.Decoder(dict[str, Any])
GAP_PAGE = 100
"""User events fetched at most to fill one gap."""
CATCH_UP_S = 2.0
"""How long a resume's snapshot waits for the stream to reach its head (then it is sent
anyway: the client keeps the largest watermark it has seen, docs/protocol.md)."""

UserListener = Callable[[str, str, Mapping[str, Any]], None]
"""Told of each event of a user's stream, in order: (user id, event name, data)."""


@dataclass(slots=True, eq=False)
class _User:
    user_id: str
    clients: set[Client] = field(default_factory=set)
    sequencer: RoomSequencer[UserEvent] = field(default_factory=RoomSequencer)
    subscription: RoomSubscription | None = None
    filling: asyncio.Task[None] | None = None
    expected: int = 0
    """A head some snapshot was read at: events up to it exist, so a hole before it is one."""
    read_at: dict[str, int] = field(default_factory=dict)
    """room id -> ``userSeq`` of the last ``read_state`` of the room released here."""
    waiters: list[tuple[int, asyncio.Future[None]]] = field(default_factory=list)
    """(head, done once every event up to ``head`` is released)."""

    def caught_up(self, head: int) -> bool:
        return self.sequencer.next_seq is not None and self.sequencer.next_seq > head

    def expect(self, head: int) -> asyncio.Future[None]:
        """Done once every event up to ``head`` is released (a hole before it is one)."""
        self.expected = max(self.expected, head)
        done = asyncio.get_running_loop().create_future()
        if self.caught_up(head):
            done.set_result(None)
        else:
            self.waiters.append((head, done))
        return done

    def released(self) -> None:
        """Events were released: wake the waiters whose head is reached."""
        waiting, self.waiters = self.waiters, []
        for head, done in waiting:
            if not self.caught_up(head):
                self.waiters.append((head, done))
            elif not done.done():
                done.set_result(None)

    def fresh(self, snapshot: Snapshot) -> list[ReadState]:
        """The states of ``snapshot`` that no ``read_state`` released since overtook."""
        return [s for s in snapshot.states if self.read_at.get(s.room_id, 0) <= snapshot.head]

    def gap(self) -> tuple[int, int] | None:
        """The first hole, exclusive bounds: one the sequencer sees, or up to ``expected``."""
        missing = self.sequencer.missing()
        if missing is not None or self.sequencer.next_seq is None:
            return missing
        if self.sequencer.next_seq <= self.expected:
            return self.sequencer.next_seq - 1, self.expected + 1
        return None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A user's read state in some rooms, read at the stream's head ``head``."""

    head: int
    states: list[ReadState]


class UserStreams:
    """The user streams of one gateway's connections."""

    def __init__(self, subscribe: Subscribe, state: ChatState, *, gap_delay_s: float) -> None:
        self._subscribe = subscribe
        self._state = state
        self._gap_delay = gap_delay_s
        self._users: dict[str, _User] = {}
        self._of: dict[Client, str] = {}
        """Whose stream each connection gets (its user id may have changed since)."""
        self._listeners: list[UserListener] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._users)

    def listen(self, listener: UserListener) -> None:
        self._listeners.append(listener)

    def clients(self, user_id: str) -> set[Client]:
        """The user's connections at this gateway."""
        user = self._users.get(user_id)
        return user.clients if user is not None else set()

    def attach(self, client: Client) -> None:
        """``client`` gets its user's stream from now on (a no-op while its user is unknown,
        and when it has it already)."""
        user_id = client.user_id
        if user_id is None or self._of.get(client) == user_id:
            return
        self.detach(client)  # it was another user's (a namespace reconnect)
        user = self._users.get(user_id)
        if user is None:
            user = self._users[user_id] = _User(user_id)
            self._spawn(self._start(user), f"user-stream:{len(self._users)}")
        user.clients.add(client)
        self._of[client] = user_id

    def detach(self, client: Client) -> None:
        """``client`` is gone; the last connection of a user ends the subscription."""
        user_id = self._of.pop(client, None)
        user = self._users.get(user_id) if user_id is not None else None
        if user is None:
            return
        user.clients.discard(client)
        if not user.clients:
            del self._users[user.user_id]
            if user.filling is not None:
                user.filling.cancel()
            if user.subscription is not None:
                self._spawn(_unsubscribe(user.subscription), "user-stream-end")

    async def read_states(self, client: Client, room_ids: list[str]) -> Snapshot:
        """The user's read state in ``room_ids`` (a resumed session: what it may have missed
        of its stream, as state), once this gateway has released the stream up to the head
        it was read at (at most :data:`CATCH_UP_S`). Empty when the user is unknown or the
        state cannot be read now (the client can ask ``get_rooms``). Write what
        :meth:`current` keeps of it."""
        user_id = client.user_id
        if user_id is None or not room_ids:
            return Snapshot(0, [])
        try:
            listing = await self._state.user_rooms(UserRoomsRequest(user_id=user_id))
        except Exception as exc:
            _log.warning("read states not sent on resume", extra={"error": type(exc).__name__})
            return Snapshot(0, [])
        wanted = set(room_ids)
        states = [
            ReadState(room_id=r.room_id, read_seq=r.read_seq, last_seq=r.last_seq,
                      unread=max(0, r.last_seq - r.read_seq))
            for r in listing.rooms
            if r.room_id in wanted
        ]  # fmt: skip
        user = self._users.get(self._of.get(client, ""))
        if user is not None and states:
            caught_up = user.expect(listing.user_seq)
            self._check_gap(user)
            try:
                await asyncio.wait_for(caught_up, CATCH_UP_S)
            except TimeoutError:
                _log.warning("read states sent before the user stream caught up")
        return Snapshot(listing.user_seq, states)

    def current(self, client: Client, snapshot: Snapshot) -> list[ReadState]:
        """The states of ``snapshot`` that no ``read_state`` released here since has
        overtaken (those rooms' events, newer, reached the connection already)."""
        user = self._users.get(self._of.get(client, ""))
        return snapshot.states if user is None else user.fresh(snapshot)

    @staticmethod
    def read_state_frame(client: Client, state: ReadState) -> bytes:
        return text_frame(client.encode_event("read_state", encode(state)))

    async def close(self) -> None:
        """Stop every task (shutdown)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _start(self, user: _User) -> None:
        """Subscribe, then learn the stream's head: events after it are new to everyone.
        Both are tried again (with backoff) until they work or the user has gone."""
        backoff = Backoff(0.05, cap_s=2.0, floor_s=0.05, jitter=True)
        subject = user_events(user.user_id)
        while user.subscription is None:
            try:
                subscription = await self._subscribe(subject, self._receiver(user))
            except Exception as exc:
                _log.warning("user stream not subscribed", extra={"error": type(exc).__name__})
                await asyncio.sleep(backoff.next())
                if self._users.get(user.user_id) is not user:
                    return
                continue
            if self._users.get(user.user_id) is not user:
                await _unsubscribe(subscription)
                return
            user.subscription = subscription
        while self._users.get(user.user_id) is user:
            try:
                head = await self._state.user_events(
                    UserEventsRequest(user_id=user.user_id, after_seq=MAX_SEQ, limit=1)
                )
            except Exception as exc:
                _log.warning("user stream head unknown", extra={"error": type(exc).__name__})
                await asyncio.sleep(backoff.next())
                continue
            self._deliver(user, user.sequencer.start(head.last_seq))
            self._check_gap(user)
            return

    def _receiver(self, user: _User) -> Callable[[str, bytes, Mapping[str, str] | None], None]:
        def receive(_subject: str, data: bytes, _headers: Mapping[str, str] | None) -> None:
            try:
                event = _event.decode(data)
            except msgspec.DecodeError:
                _log.error("undecodable user event: dropped")
                return
            self.offer(user, [event])

        return receive

    def offer(self, user: _User, events: list[UserEvent]) -> None:
        released: list[UserEvent] = []
        for event in events:
            try:
                released += user.sequencer.offer(event.user_seq, event)
            except OverflowError:
                _log.error("user stream backlog overflow; skipping ahead")
                user.sequencer.start(event.user_seq)
        self._deliver(user, released)
        self._check_gap(user)

    def _check_gap(self, user: _User) -> None:
        if user.gap() is not None and (user.filling is None or user.filling.done()):
            user.filling = asyncio.create_task(self._fill(user), name="user-stream-fill")

    async def _fill(self, user: _User) -> None:
        """Wait briefly for stragglers, then fetch what is still missing from history."""
        backoff = Backoff(self._gap_delay, cap_s=2.0, floor_s=0.05, jitter=False)
        while (gap := user.gap()) is not None:
            await asyncio.sleep(backoff.next())
            if (gap := user.gap()) is None or self._users.get(user.user_id) is not user:
                return
            try:
                page = await self._state.user_events(
                    UserEventsRequest(user_id=user.user_id, after_seq=gap[0], limit=GAP_PAGE)
                )
            except Exception as exc:
                _log.warning("user stream gap fill failed", extra={"error": type(exc).__name__})
                continue
            if not page.complete:
                _log.warning("user stream gap no longer kept; skipping ahead")
                self._deliver(user, user.sequencer.start(gap[1] - 1))
                continue
            self.offer(user, page.events)

    def _deliver(self, user: _User, events: list[UserEvent]) -> None:
        for event in events:
            try:
                data = _data.decode(event.data)
            except msgspec.DecodeError:
                _log.error("undecodable user event data: dropped")
                continue
            data["userSeq"] = event.user_seq
            if event.event == "read_state" and isinstance(room_id := data.get("roomId"), str):
                user.read_at[room_id] = event.user_seq
            for listener in self._listeners:
                listener(user.user_id, event.event, data)
            payload = encode(data)
            write_event(user.clients, event.event, payload)
        user.released()


def write_event(clients: Iterable[Client], name: str, payload: bytes) -> None:
    """Write the event ``name`` with ``payload`` to ``clients``, encoded once per protocol."""
    frames: dict[str, bytes] = {}
    for client in list(clients):
        frame = frames.get(client.protocol)
        if frame is None:
            frame = frames[client.protocol] = text_frame(client.encode_event(name, payload))
        client.write_frame(frame)


async def _unsubscribe(subscription: RoomSubscription) -> None:
    try:
        await subscription.unsubscribe()
    except Exception as exc:  # the bus connection is closing: the subscription goes with it
        _log.debug("unsubscribe failed", extra={"error": repr(exc)})
