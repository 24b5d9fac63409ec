"""Resuming a session on any gateway: identity, rooms, and every message missed.

The session service says whether the session is still resumable (and that the token is
right); history supplies what the client missed in each room, after the position the
client reports (Socket.IO offset, native ``lastSeq``) or, for a room it reports nothing
about, the position on record. Replays are bounded (``GATEWAY_MAX_REPLAY`` per room): a
client that missed more is told "not recovered" and rejoins and pages history instead.

The room policy is applied again with the token the resuming connection presents: a room
the session was in but the token no longer allows is left (``user_left`` if it was the
user's last connection there) and reported as dropped, never recovered.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from chat_common.errors import ChatError, ErrorCode
from chat_common.schemas import (
    DisconnectRequest,
    FetchRequest,
    Message,
    ResumeRequest,
)
from chat_gateway.auth import room_allowed
from chat_gateway.backend import Backend
from chat_gateway.connection.client import Client
from chat_gateway.rooms.hub import Member, RoomHub
from chat_gateway.rooms.leaving import leave_request

__all__ = ["ResumePlan", "Resumer"]

_log = logging.getLogger("chat.gateway.resume")
_PAGE = 200


@dataclass(frozen=True, slots=True)
class _RoomReplay:
    room_id: str
    member: Member
    position: int
    missed: list[Message]


@dataclass(frozen=True, slots=True)
class ResumePlan:
    """What :meth:`Resumer.finish` will send once the client has been told it recovered."""

    rooms: list[_RoomReplay]
    dropped: list[str]
    """Rooms of the session that the presented token no longer allows: left, not recovered."""

    @property
    def room_ids(self) -> list[str]:
        return [r.room_id for r in self.rooms]


class _TooMuchMissed(Exception):
    pass


class Resumer:
    def __init__(self, backend: Backend, hub: RoomHub, *, gateway_id: str, max_replay: int) -> None:
        self._backend = backend
        self._hub = hub
        self._gateway_id = gateway_id
        self._max_replay = max_replay

    async def resume(
        self, client: Client, *, session_id: str, token: str, positions: dict[str, int]
    ) -> ResumePlan | None:
        """Take over the session; ``None`` means not recovered (the client starts afresh)."""
        try:
            found = await self._backend.resume(
                ResumeRequest(
                    session_id=session_id,
                    token=token,
                    gateway_id=self._gateway_id,
                    conn=client.connection_key,
                    email=client.identity.email if client.identity else None,
                )
            )
        except ChatError as exc:
            _log.info("resume refused", extra={"code": exc.code.value})
            return None
        client.session.adopt(
            session_id=session_id, token=token, socket_id=found.sid, email=found.email
        )
        plan: list[_RoomReplay] = []
        dropped = sorted(r for r in found.rooms if not room_allowed(client.identity, r))
        try:
            for room_id in dropped:
                await self._leave(client, room_id)
            for room_id, recorded in sorted(found.rooms.items()):
                if room_id in dropped:
                    continue
                position = positions.get(room_id, recorded)
                member = await self._hub.add_pending(client, room_id)
                client.rooms.joined(room_id, join_position=recorded)
                missed = await self._missed(room_id, position)
                plan.append(_RoomReplay(room_id, member, position, missed))
        except (ChatError, _TooMuchMissed) as exc:
            _log.info("resume abandoned", extra={"reason": type(exc).__name__})
            await self._abandon(client)
            return None
        return ResumePlan(plan, dropped)

    async def _leave(self, client: Client, room_id: str) -> None:
        try:
            await self._backend.leave(leave_request(client, room_id))
        except ChatError as exc:
            if exc.code is not ErrorCode.NOT_IN_ROOM:
                raise

    async def _missed(self, room_id: str, after: int) -> list[Message]:
        missed: list[Message] = []
        while True:
            page = await self._backend.fetch(
                FetchRequest(room_id=room_id, after_seq=after, limit=_PAGE)
            )
            missed += page.messages
            if len(missed) > self._max_replay:
                raise _TooMuchMissed
            if len(page.messages) < _PAGE or not page.messages:
                return missed
            after = page.messages[-1].seq

    async def _abandon(self, client: Client) -> None:
        """Give the session up (its rooms announce the user left) and start a fresh one."""
        for room_id in client.rooms.leave_all():
            await self._hub.remove(client, room_id)
        session = client.session
        try:
            await self._backend.disconnect(
                DisconnectRequest(session_id=session.session_id, conn=client.connection_key)
            )
        except ChatError as exc:
            _log.warning("could not end the abandoned session", extra={"code": exc.code.value})
        session.start_afresh()

    def finish(self, plan: ResumePlan) -> None:
        """Send what was missed, room by room, then deliver live events."""
        for room in plan.rooms:
            self._hub.replay(room.room_id, room.member, room.missed, join_position=room.position)
