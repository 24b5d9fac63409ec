"""The gateway's view of durable chat state (the history service's membership, read state,
inbox and user stream endpoints): typed calls over the bus, retried like every backend call
(:class:`~chat_gateway.backend.BusBackend`), each idempotent on the other side."""

from __future__ import annotations

from typing import Protocol

from chat_common.chatstate import (
    InboxRequest,
    InboxResponse,
    MarkReadRequest,
    MarkReadResponse,
    MemberJoinRequest,
    MemberJoinResponse,
    MemberLeaveRequest,
    MemberLeaveResponse,
    UserEventsRequest,
    UserEventsResponse,
    UserRoomsRequest,
    UserRoomsResponse,
)
from chat_common.retry import RetryPolicy, retry_call
from chat_common.schemas import decode, encode
from chat_common.subjects import history_endpoint
from chat_gateway.backend import Request

__all__ = ["BusChatState", "ChatState"]


class ChatState(Protocol):
    async def member_join(self, req: MemberJoinRequest) -> MemberJoinResponse: ...
    async def member_leave(self, req: MemberLeaveRequest) -> MemberLeaveResponse: ...
    async def mark_read(self, req: MarkReadRequest) -> MarkReadResponse: ...
    async def inbox(self, req: InboxRequest) -> InboxResponse: ...
    async def user_rooms(self, req: UserRoomsRequest) -> UserRoomsResponse: ...
    async def user_events(self, req: UserEventsRequest) -> UserEventsResponse: ...


class BusChatState:
    """:class:`ChatState` over request/reply."""

    def __init__(self, request: Request, *, policy: RetryPolicy) -> None:
        self._request = request
        self._policy = policy

    async def _call(self, name: str, body: bytes) -> bytes:
        subject = history_endpoint(name)
        return await retry_call(self._policy, lambda: self._request(subject, body))

    async def member_join(self, req: MemberJoinRequest) -> MemberJoinResponse:
        return decode(await self._call("member_join", encode(req)), MemberJoinResponse)

    async def member_leave(self, req: MemberLeaveRequest) -> MemberLeaveResponse:
        return decode(await self._call("member_leave", encode(req)), MemberLeaveResponse)

    async def mark_read(self, req: MarkReadRequest) -> MarkReadResponse:
        return decode(await self._call("mark_read", encode(req)), MarkReadResponse)

    async def inbox(self, req: InboxRequest) -> InboxResponse:
        return decode(await self._call("inbox", encode(req)), InboxResponse)

    async def user_rooms(self, req: UserRoomsRequest) -> UserRoomsResponse:
        return decode(await self._call("user_rooms", encode(req)), UserRoomsResponse)

    async def user_events(self, req: UserEventsRequest) -> UserEventsResponse:
        return decode(await self._call("user_events", encode(req)), UserEventsResponse)
