"""Client events about the user rather than one connection's rooms: ``mark_read``,
``get_rooms`` (the inbox) and ``unsubscribe`` (membership ended for good).

They need to know who the user is: the token's subject, or in development mode the email
the connection gave at its first ``join`` (or in ``get_rooms``). Rooms are the user's
durable memberships, whether or not this connection has joined them live.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

from chat_common.chatstate import InboxRequest, MemberLeaveRequest
from chat_common.errors import ChatError, ErrorCode, InvalidArgument
from chat_common.schemas import encode, parse_value
from chat_gateway.connection.client import Client
from chat_gateway.events import Handler, Incoming, Result
from chat_gateway.payloads import GetRoomsPayload, MarkReadPayload, UnsubscribePayload
from chat_gateway.users.inbox import Inbox
from chat_gateway.users.marks import ReadMarks
from chat_gateway.users.state import ChatState
from chat_gateway.users.stream import UserStreams

__all__ = ["UserEventHandlers"]

_log = logging.getLogger("chat.gateway.events")
LeaveRoom = Callable[[Client, str], Awaitable[None]]
"""Leave a room on one connection (here and in the session service)."""
DropRoom = Callable[[Client, str], Coroutine[Any, Any, None]]
"""Leave a room on one connection at once; the coroutine tells the session service."""


def known_user(client: Client) -> str:
    """The connection's user id, or ``INVALID_ARGUMENT`` when it has not said who it is."""
    user_id = client.user_id
    if user_id is None:
        raise InvalidArgument("who is this? join a room (or give get_rooms an email) first")
    return user_id


class UserEventHandlers:
    """``mark_read``, ``get_rooms`` and ``unsubscribe``; see the module docstring."""

    def __init__(
        self,
        state: ChatState,
        *,
        streams: UserStreams,
        inbox: Inbox,
        marks: ReadMarks,
        leave_room: LeaveRoom,
        drop_room: DropRoom,
    ) -> None:
        self._state = state
        self._streams = streams
        self._inbox = inbox
        self._marks = marks
        self._leave_room = leave_room
        self._drop_room = drop_room
        self._tasks: set[asyncio.Task[None]] = set()
        streams.listen(self._on_user_event)

    def table(self) -> dict[str, Handler]:
        return {
            "mark_read": self.mark_read,
            "get_rooms": self.get_rooms,
            "unsubscribe": self.unsubscribe,
        }

    async def mark_read(self, event: Incoming) -> Result:
        """Move the user's watermark in a room to ``seq`` (never back); the ack has the
        state after it, and the user's connections get ``read_state``."""
        p = parse_value(event.data, MarkReadPayload)
        user_id = known_user(event.client)
        state = await self._marks.mark(user_id, p.room_id, p.seq, turn=event.turn)
        return Result(
            {"ok": True, "roomId": p.room_id, "readSeq": state.read_seq,
             "lastSeq": state.last_seq, "unread": state.unread}
        )  # fmt: skip

    async def get_rooms(self, event: Incoming) -> Result:
        """A page of the user's rooms, most recently active first; the first page makes
        the connection follow its inbox (``inbox_update``) unless ``follow`` is false."""
        client, p = event.client, parse_value(event.data, GetRoomsPayload)
        user_id = self._identify(client, p.email)
        if p.follow is not False and p.after is None:
            await self._inbox.follow(client)  # before the page: no update falls between
        page = await self._state.inbox(
            InboxRequest(user_id=user_id, after=p.after, limit=p.limit or 50)
        )
        body = b'{"ok":true,"rooms":%s,"next":%s,"total":%d}' % (
            encode(page.rooms),
            encode(page.next),
            page.total,
        )
        return Result(body)

    async def unsubscribe(self, event: Incoming) -> Result:
        """End the user's membership of a room for good, on every device: this connection
        leaves it now, the others when their ``membership`` event comes."""
        client, p = event.client, parse_value(event.data, UnsubscribePayload)
        user_id = known_user(client)
        if p.room_id in client.rooms:
            await self._leave_room(client, p.room_id)
        reply = await self._state.member_leave(
            MemberLeaveRequest(user_id=user_id, room_id=p.room_id)
        )
        return Result({"ok": True, "roomId": p.room_id, "removed": reply.removed})

    def _identify(self, client: Client, email: str | None) -> str:
        """The user id; in development mode ``email`` names the user of a connection that
        has not joined a room yet."""
        known = client.identity.email if client.identity is not None else client.session.email
        if email is not None and known is not None and email != known:
            raise ChatError(ErrorCode.IDENTITY_MISMATCH, "this connection has another email")
        if client.identity is None and known is None and email is not None:
            client.session.email = email
            self._streams.attach(client)
        return known_user(client)

    def _on_user_event(self, user_id: str, event: str, data: Mapping[str, Any]) -> None:
        """A membership ended elsewhere: this gateway's connections of the user that joined
        the room leave it too."""
        if event != "membership" or data.get("member") is not False:
            return
        room_id = data.get("roomId")
        for client in list(self._streams.clients(user_id)):
            if isinstance(room_id, str) and room_id in client.rooms and not client.closing:
                # Left here at once, before this event is written; presence after.
                task = asyncio.create_task(self._drop_room(client, room_id), name="unsubscribed")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
