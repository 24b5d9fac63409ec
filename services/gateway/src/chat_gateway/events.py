"""Client events: join, send_message, get_history, get_members, leave, resume and auth
(the user's own events, ``mark_read``, ``get_rooms`` and ``unsubscribe``, are
:mod:`chat_gateway.userevents`).

Every handler takes its input the same way (an :class:`Incoming`: the client, the event's
data, and for ``send_message`` its place in the sender's append order) and returns a
:class:`Result`: the ack's JSON and what to run once the ack is written. A handler refuses
by raising :class:`~chat_common.errors.ChatError`; the dispatcher
(:mod:`chat_gateway.dispatch`) is the error boundary around them, and encodes the answer
in the client's protocol.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from chat_common.chatstate import MemberJoinRequest
from chat_common.errors import ChatError, ErrorCode, InvalidArgument
from chat_common.schemas import (
    FetchRequest,
    JoinRequest,
    MembersRequest,
    parse_value,
)
from chat_common.tokens import token_hash
from chat_gateway.appends.batcher import AppendBatcher
from chat_gateway.appends.plan import Slot
from chat_gateway.appends.request import append_request
from chat_gateway.auth import room_allowed
from chat_gateway.backend import Backend
from chat_gateway.connection.client import Client
from chat_gateway.metrics import RESUMES
from chat_gateway.payloads import (
    GetHistoryPayload,
    GetMembersPayload,
    JoinPayload,
    LeavePayload,
    ResumePayload,
    SendMessagePayload,
)
from chat_gateway.resume import Resumer
from chat_gateway.rooms.hub import RoomHub
from chat_gateway.rooms.leaving import RoomLeaving
from chat_gateway.sessionids import Hold
from chat_gateway.settings import GatewaySettings
from chat_gateway.users.marks import Turn
from chat_gateway.users.state import ChatState
from chat_gateway.users.stream import UserStreams

__all__ = ["EventHandlers", "Handler", "Incoming", "Result"]

_log = logging.getLogger("chat.gateway.events")


@dataclass(frozen=True, slots=True)
class Incoming:
    """One client event as its handler gets it."""

    client: Client
    data: object
    slot: Slot[Any] | None = None
    """Its place in the sender's append order (``send_message``: reserved on arrival)."""
    turn: Turn | None = None
    """Its turn among the connection's marks (``mark_read``: taken on arrival)."""


@dataclass(frozen=True, slots=True)
class Result:
    """What a handler produced: the ack's JSON (a body to encode, or bytes already encoded)
    and what to run once the ack is written."""

    body: dict[str, Any] | bytes
    then: Callable[[], None] | None = None


Handler = Callable[[Incoming], Awaitable[Result]]
Authenticate = Callable[[Client, object], None]
"""Verify a token for a client (raises ``UNAUTHENTICATED`` or ``IDENTITY_MISMATCH``)."""


def _require_member(client: Client, room_id: str) -> None:
    if room_id not in client.rooms:
        raise ChatError(ErrorCode.NOT_IN_ROOM, "join the room first")


class EventHandlers:
    """The client events, independent of the protocol they arrive in."""

    def __init__(
        self,
        settings: GatewaySettings,
        backend: Backend,
        hub: RoomHub,
        *,
        appender: AppendBatcher,
        resumer: Resumer,
        authenticate: Authenticate,
        streams: UserStreams,
        state: ChatState,
        leaving: RoomLeaving,
    ) -> None:
        self._s = settings
        self._backend = backend
        self._hub = hub
        self._appender = appender
        self._resumer = resumer
        self._authenticate = authenticate
        self._streams = streams
        self._state = state
        self._leaving = leaving

    def table(self) -> dict[str, Handler]:
        """Every event by name."""
        return {
            "join": self.join,
            "send_message": self.send_message,
            "get_history": self.get_history,
            "get_members": self.get_members,
            "leave": self.leave,
            "resume": self.resume,
            "auth": self.auth,
        }

    async def join(self, event: Incoming) -> Result:
        client, p = event.client, parse_value(event.data, JoinPayload)
        session = client.session
        if session.email is not None and session.email != p.email:
            raise ChatError(ErrorCode.IDENTITY_MISMATCH, "this connection has another email")
        if client.identity is not None and client.identity.email != p.email:
            raise ChatError(ErrorCode.IDENTITY_MISMATCH, "the email differs from the token's")
        if not room_allowed(client.identity, p.room_id):
            raise ChatError(ErrorCode.FORBIDDEN, "the token does not allow this room")
        rooms = client.rooms
        if p.room_id not in rooms and len(rooms) >= self._s.max_rooms_per_connection:
            raise InvalidArgument("too many rooms on this connection")
        member = await self._hub.add_pending(client, p.room_id)
        session.begin()
        joined = None
        user_id = client.identity.subject if client.identity is not None else p.email
        try:
            page, membership = await asyncio.gather(
                self._backend.fetch(
                    FetchRequest(
                        room_id=p.room_id,
                        limit=max(self._s.join_history_limit, 1),
                        viewer=user_id,
                    )
                ),
                self._state.member_join(
                    MemberJoinRequest(user_id=user_id, email=p.email, room_id=p.room_id)
                ),
            )
            joined = await self._backend.join(
                JoinRequest(
                    session_id=session.session_id,
                    gateway_id=self._s.instance_id,
                    email=p.email,
                    room_id=p.room_id,
                    token_hash=token_hash(session.token),
                    sid=session.socket_id,
                    join_position=page.last_seq,
                    conn=client.connection_key,
                    op=session.next_op(),
                )
            )
        except BaseException:
            if p.room_id not in rooms:
                await self._hub.remove(client, p.room_id)
                if joined is not None:
                    await self._leaving.undo_join(client, p.room_id)
            raise
        session.email = p.email
        self._streams.attach(client)
        rooms.joined(p.room_id, join_position=page.last_seq)
        history = page.messages[-self._s.join_history_limit :] if self._s.join_history_limit else []
        last, read = max(membership.last_seq, page.last_seq), membership.read_seq
        body = {
            "ok": True, "sessionId": session.session_id, "resumeToken": session.token,
            "roomId": p.room_id, "users": joined.users, "userCount": joined.count,
            "usersNext": joined.next, "history": history, "role": membership.role,
            "readSeq": read, "lastSeq": last, "unread": max(0, last - read),
        }  # fmt: skip
        return Result(
            body, lambda: self._hub.activate(p.room_id, member, join_position=page.last_seq)
        )

    async def resume(self, event: Incoming) -> Result:
        """Native protocol: take over a dropped session and receive what was missed."""
        client, p = event.client, parse_value(event.data, ResumePayload)
        if client.session.hold is not Hold.NONE:
            raise InvalidArgument("resume must come before any join on a connection")
        plan = await self._resumer.resume(
            client, session_id=p.session_id, token=p.resume_token, positions=dict(p.last_seq or {})
        )
        session = client.session
        body: dict[str, Any] = {
            "ok": True,
            "recovered": plan is not None,
            "sessionId": session.session_id,
            "resumeToken": session.token,
        }
        RESUMES.labels("recovered" if plan else "not_recovered").inc()
        if plan is None:
            return Result(body)
        self._streams.attach(client)
        snapshot = await self._streams.read_states(client, plan.room_ids)
        body |= {
            "email": session.email,
            "rooms": plan.room_ids,
            "droppedRooms": plan.dropped,
            "readState": self._streams.current(client, snapshot),
        }

        def then() -> None:
            self._resumer.finish(plan)

        return Result(body, then)

    async def send_message(self, event: Incoming) -> Result:
        """Commit the message (in the sender's order: ``slot``) and ack with it, spliced as
        the JSON history stored, the same bytes the room's members receive."""
        client, p = event.client, parse_value(event.data, SendMessagePayload)
        _require_member(client, p.room_id)
        if not 1 <= len(p.text) <= self._s.max_text_length:
            raise InvalidArgument(f"text must be 1 to {self._s.max_text_length} characters")
        req = append_request(client, p.room_id, p.text, p.client_msg_id)
        slot = event.slot or self._appender.reserve(client.connection_key)
        message = await self._appender.append(slot, req)
        return Result(b'{"ok":true,"message":' + message + b"}")

    async def get_history(self, event: Incoming) -> Result:
        p = parse_value(event.data, GetHistoryPayload)
        _require_member(event.client, p.room_id)
        page = await self._backend.fetch(
            FetchRequest(
                room_id=p.room_id,
                before_seq=p.before_seq,
                after_seq=p.after_seq,
                limit=p.limit or 50,
                replica_ok=p.before_seq is not None and p.after_seq is None,  # scroll-back
                viewer=event.client.user_id,
            )
        )
        return Result({"ok": True, "messages": page.messages, "lastSeq": page.last_seq})

    async def get_members(self, event: Incoming) -> Result:
        """A page of the room's users in join order; ``next`` is ``after`` for the next
        page (``null`` after the last)."""
        p = parse_value(event.data, GetMembersPayload)
        _require_member(event.client, p.room_id)
        page = await self._backend.members(
            MembersRequest(room_id=p.room_id, after=p.after, limit=p.limit or 100)
        )
        return Result(
            {"ok": True, "roomId": p.room_id, "users": page.users, "userCount": page.count,
             "next": page.next}
        )  # fmt: skip

    async def leave(self, event: Incoming) -> Result:
        p = parse_value(event.data, LeavePayload)
        _require_member(event.client, p.room_id)
        await self._leaving.leave(event.client, p.room_id)
        return Result({"ok": True})

    async def auth(self, event: Incoming) -> Result:
        """Native protocol: ``auth {token}`` (or a fresh token before the old expires).

        A fresh token's room policy applies at once: rooms it no longer allows are left
        and named in ``droppedRooms``."""
        client, data = event.client, event.data
        self._authenticate(client, data.get("token") if isinstance(data, dict) else None)
        dropped = [r for r in sorted(client.rooms.rooms) if not room_allowed(client.identity, r)]
        for room_id in dropped:
            await self._leaving.leave(client, room_id)
        email = client.identity.email if client.identity else None
        return Result({"ok": True, "email": email, "droppedRooms": dropped})
