"""Leaving a room on one connection: asked (``leave``), because the membership ended
(``unsubscribe`` on another device), or undoing a join that failed half-way.

The room hub holds the connection's events of the room while the session service records
the leave (:meth:`RoomLeaving.leave`), so that none is lost or repeated either way.
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from typing import Any

from chat_common.errors import ChatError, ErrorCode
from chat_common.schemas import LeaveRequest
from chat_gateway.backend import Backend
from chat_gateway.connection.client import Client
from chat_gateway.rooms.hub import RoomHub

__all__ = ["RoomLeaving", "leave_request"]

_log = logging.getLogger("chat.gateway.rooms")


class RoomLeaving:
    """How a connection leaves a room, here and in the session service."""

    def __init__(self, backend: Backend, hub: RoomHub) -> None:
        self._backend = backend
        self._hub = hub

    async def leave(self, client: Client, room_id: str) -> None:
        """Leave ``room_id`` here and in the session service."""
        # Hold the client's events of the room until the session service has recorded the
        # leave: on success they are dropped, on failure delivered, never lost or repeated.
        self._hub.suspend(client, room_id)
        try:
            await self._backend.leave(leave_request(client, room_id))
        except ChatError as exc:
            if exc.code is not ErrorCode.NOT_IN_ROOM:
                self._hub.unsuspend(client, room_id)
                raise
        client.rooms.left(room_id)
        await self._hub.remove(client, room_id)

    def drop(self, client: Client, room_id: str) -> Coroutine[Any, Any, None]:
        """Leave ``room_id`` because the user is no longer a member of it: on this connection
        at once, in the session service by the coroutine returned (run it as a task)."""
        self._hub.suspend(client, room_id)
        client.rooms.left(room_id)
        return self._forget_presence(client, room_id)

    async def _forget_presence(self, client: Client, room_id: str) -> None:
        try:
            await self._backend.leave(leave_request(client, room_id))
        except ChatError as exc:
            if exc.code is not ErrorCode.NOT_IN_ROOM:
                _log.warning("presence kept for a room left", extra={"code": exc.code.value})
        await self._hub.remove(client, room_id)

    async def undo_join(self, client: Client, room_id: str) -> None:
        try:
            await self._backend.leave(leave_request(client, room_id))
        except ChatError as exc:
            _log.warning("could not undo a failed join", extra={"code": exc.code.value})


def leave_request(client: Client, room_id: str) -> LeaveRequest:
    """This connection's next numbered leave of ``room_id``."""
    session = client.session
    return LeaveRequest(
        session_id=session.session_id,
        room_id=room_id,
        conn=client.connection_key,
        op=session.next_op(),
    )
