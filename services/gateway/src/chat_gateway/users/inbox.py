"""Live inbox updates at one gateway, for the connections that follow their user's inbox.

A connection follows its inbox with ``get_rooms`` (its first page, unless ``follow`` is
false), without joining any room. The gateway then listens to the message subject of each
of the user's rooms (``chat.room.<room>.events``: one subscription per room however many
followers are members of it, so a message costs one bus delivery per gateway, not per
member) and sends each follower ``inbox_update {roomId, lastSeq, readSeq, unread,
lastMessage}`` when a room of theirs gets a message. Watermarks come from the user's stream
(``read_state``), rooms joined or left from its ``membership`` events
(:mod:`chat_gateway.users.stream`); the arithmetic is the pure
:mod:`chat_gateway.users.inboxindex`.

Updates are state, not deltas: each carries the room's head and the user's watermark, and
a client keeps, per room, the update with the largest ``lastSeq``. A message lost on the
bus delays a badge until the room's next message (or the next ``get_rooms``); it never
makes it wrong for good.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from chat_common.chatstate import UserRoomsRequest
from chat_common.schemas import RoomMessages
from chat_common.subjects import room_events
from chat_gateway.connection.client import Client
from chat_gateway.rooms.feed import RoomSubscription, Subscribe
from chat_gateway.users.inboxindex import InboxIndex, RoomState
from chat_gateway.users.state import ChatState
from chat_gateway.users.stream import UserStreams, write_event

__all__ = ["Inbox"]

_log = logging.getLogger("chat.gateway.inbox")
_messages = msgspec.json.Decoder(RoomMessages)


class Inbox:
    """The inbox followers of one gateway (see the module docstring)."""

    def __init__(self, subscribe: Subscribe, state: ChatState, streams: UserStreams) -> None:
        self._subscribe = subscribe
        self._state = state
        self._index = InboxIndex()
        self._followers: dict[str, set[Client]] = {}
        self._of: dict[Client, str] = {}
        self._loading: dict[str, asyncio.Future[None]] = {}
        self._subscriptions: dict[str, RoomSubscription] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        streams.listen(self._on_user_event)

    def following(self, client: Client) -> bool:
        return client in self._of

    def rooms_followed(self) -> int:
        return len(self._subscriptions)

    async def follow(self, client: Client) -> None:
        """``client`` gets its user's inbox updates from now on; returns once the gateway
        listens to every room of the user (updates after it are not missed)."""
        user_id = client.user_id
        assert user_id is not None
        if self._of.get(client, user_id) != user_id:
            self.unfollow(client)
        self._of[client] = user_id
        self._followers.setdefault(user_id, set()).add(client)
        if user_id in self._index:
            loading = self._loading.get(user_id)
            if loading is not None:
                await asyncio.shield(loading)
            return
        loading = asyncio.get_running_loop().create_future()
        self._loading[user_id] = loading
        self._index.add_user(user_id, ())
        try:
            await self._load(user_id)
            loading.set_result(None)
        except BaseException as exc:
            loading.set_exception(exc)
            loading.exception()  # retrieved: the waiters re-raise it
            self._forget(user_id)  # every follower of the user failed with this one
            raise
        finally:
            self._loading.pop(user_id, None)

    async def _load(self, user_id: str) -> None:
        """The user's rooms, listened to, then read again: a message committed between the
        first read and the subscriptions is in the second."""
        for _ in range(2):
            listing = await self._state.user_rooms(UserRoomsRequest(user_id=user_id))
            if user_id not in self._index:
                return
            new = self._index.add_user(
                user_id, ((r.room_id, r.read_seq, r.last_seq, r.unread) for r in listing.rooms)
            )
            await asyncio.gather(*(self._listen(room_id) for room_id in new))

    def unfollow(self, client: Client) -> None:
        """``client`` no longer follows (it closed); the last follower of a user ends the
        rooms' subscriptions nobody else needs."""
        user_id = self._of.pop(client, None)
        followers = self._followers.get(user_id) if user_id is not None else None
        if followers is None or user_id is None:
            return
        followers.discard(client)
        if not followers:
            self._forget(user_id)

    def _forget(self, user_id: str) -> None:
        """No connection here follows ``user_id`` any more."""
        for client in self._followers.pop(user_id, ()):
            self._of.pop(client, None)
        for room_id in self._index.remove_user(user_id):
            self._spawn(self._unlisten(room_id))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro, name="inbox")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _listen(self, room_id: str) -> None:
        subscription = await self._subscribe(room_events(room_id), self._receiver(room_id))
        if self._index.follows(room_id) and room_id not in self._subscriptions:
            self._subscriptions[room_id] = subscription
        else:
            await subscription.unsubscribe()

    async def _unlisten(self, room_id: str) -> None:
        subscription = self._subscriptions.pop(room_id, None)
        if subscription is not None and not self._index.follows(room_id):
            try:
                await subscription.unsubscribe()
            except Exception as exc:  # the bus connection is closing
                _log.debug("unsubscribe failed", extra={"error": repr(exc)})

    def _on_user_event(self, user_id: str, event: str, data: Mapping[str, Any]) -> None:
        if user_id not in self._index:
            return
        room_id = data.get("roomId")
        if not isinstance(room_id, str):
            return
        if event == "read_state":
            read, last, unread = data.get("readSeq"), data.get("lastSeq"), data.get("unread")
            if isinstance(read, int) and isinstance(last, int) and isinstance(unread, int):
                self._index.read(user_id, room_id, read, last, unread)
        elif event == "membership" and data.get("member") is True:
            read, last = data.get("readSeq"), data.get("lastSeq")
            read = read if isinstance(read, int) else 0
            last = last if isinstance(last, int) else read
            if self._index.joined(user_id, room_id, read, last):
                self._spawn(self._listen(room_id))
        elif (
            event == "membership"
            and data.get("member") is False
            and self._index.left(user_id, room_id)
        ):
            self._spawn(self._unlisten(room_id))

    def _receiver(self, room_id: str) -> Callable[[str, bytes, Mapping[str, str] | None], None]:
        def receive(_subject: str, data: bytes, _headers: Mapping[str, str] | None) -> None:
            try:
                batch = _messages.decode(data)
            except msgspec.DecodeError:
                _log.error("undecodable room messages for the inbox: dropped")
                return
            latest: dict[str, tuple[RoomState, bytes | None]] = {}
            for m in batch.messages:
                moved = self._index.event(room_id, m.seq, m.sender, m.kind, m.target)
                for user_id, state in moved:
                    last = bytes(m.data) if m.kind is None else latest.get(user_id, (0, None))[1]
                    latest[user_id] = (state, last)
            for user_id, (state, last_message) in latest.items():
                self._send(user_id, room_id, state, last_message)

        return receive

    def _send(
        self, user_id: str, room_id: str, state: RoomState, last_message: bytes | None
    ) -> None:
        """``inbox_update``; without ``lastMessage`` when only a delete moved the count
        (the room's preview is as it was)."""
        payload = b'{"roomId":"%s","lastSeq":%d,"readSeq":%d,"unread":%d' % (
            room_id.encode(),
            state.last_seq,
            state.read_seq,
            state.unread,
        )
        if last_message is not None:
            payload += b',"lastMessage":' + last_message
        write_event(self._followers.get(user_id, ()), "inbox_update", payload + b"}")
