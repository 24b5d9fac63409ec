"""Session endpoints: join, leave, disconnect. Presence changes are published to the room.

Every endpoint takes and returns JSON (``chat_common.schemas``); Redis failures become
``UNAVAILABLE`` so callers can retry.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

import msgspec
from redis.exceptions import RedisError

from chat_common.errors import ChatError, ErrorCode, Unavailable
from chat_common.natsio import Publish
from chat_common.schemas import (
    DisconnectRequest,
    DisconnectResponse,
    JoinRequest,
    JoinResponse,
    LeaveRequest,
    LeaveResponse,
    PresenceEvent,
    RoomEvent,
    encode,
    parse_request,
)
from chat_common.subjects import room_events
from chat_session.store import SessionStore

__all__ = ["SessionHandlers"]

_log = logging.getLogger("chat.session")

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _redis_unavailable(fn: Callable[_P, Awaitable[_R]]) -> Callable[_P, Awaitable[_R]]:
    @functools.wraps(fn)
    async def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return await fn(*args, **kwargs)
        except (RedisError, OSError) as exc:
            _log.warning("redis call failed", extra={"error": type(exc).__name__})
            raise Unavailable("session store unavailable") from exc

    return wrapper


class SessionHandlers:
    """The session service's endpoints, independent of how they are served."""

    def __init__(self, store: SessionStore, publish: Publish) -> None:
        self._store = store
        self._publish = publish

    async def _announce(self, event: str, room_id: str, email: str, users: list[str]) -> None:
        data = encode(PresenceEvent(room_id=room_id, email=email, users=users))
        payload = encode(RoomEvent(event=event, data=msgspec.Raw(data)))
        await self._publish(room_events(room_id), payload)

    @_redis_unavailable
    async def join(self, body: bytes) -> bytes:
        req = parse_request(body, JoinRequest)
        bound = await self._store.bind_email(req.session_id, req.email, req.gateway_id)
        if bound != req.email:
            raise ChatError(ErrorCode.IDENTITY_MISMATCH, "this session already has another email")
        change = await self._store.join(req.session_id, req.email, req.room_id)
        if change.changed:
            await self._announce("user_joined", req.room_id, req.email, change.users)
        return encode(JoinResponse(users=change.users, first=change.changed))

    @_redis_unavailable
    async def leave(self, body: bytes) -> bytes:
        req = parse_request(body, LeaveRequest)
        email, rooms = await self._store.session_rooms(req.session_id)
        if email is None or req.room_id not in rooms:
            raise ChatError(ErrorCode.NOT_IN_ROOM, "not a member of this room")
        change = await self._store.leave(req.session_id, email, req.room_id)
        if change.changed:
            await self._announce("user_left", req.room_id, email, change.users)
        return encode(LeaveResponse(users=change.users, last=change.changed))

    @_redis_unavailable
    async def disconnect(self, body: bytes) -> bytes:
        req = parse_request(body, DisconnectRequest)
        email, rooms = await self._store.session_rooms(req.session_id)
        if email is not None:
            for room_id in rooms:
                change = await self._store.leave(req.session_id, email, room_id)
                if change.changed:
                    await self._announce("user_left", room_id, email, change.users)
        await self._store.forget(req.session_id)
        return encode(DisconnectResponse(rooms=rooms))
