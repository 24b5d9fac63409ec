"""Session endpoints and the reaper. Presence changes are published on the room's presence
subject (``chat.room.<room>.presence``), which only this service may publish to.

Endpoints: ``join``, ``leave``, ``detach`` (connection dropped: keep it resumable),
``disconnect`` (the client left for good), ``resume``, ``heartbeat`` and ``restore``
(re-register a live session the store lost); for operators (``chatctl``), the read-only
``rooms``, ``presence`` and ``inspect`` (one session, never its token). Every endpoint takes and returns JSON
(``chat_common.schemas``); Redis failures become ``UNAVAILABLE`` so callers can retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Callable, Iterator

import msgspec

from chat_common.errors import ChatError, ErrorCode, InvalidArgument
from chat_common.natsio import Publish
from chat_common.schemas import (
    DetachRequest,
    DisconnectRequest,
    DisconnectResponse,
    HeartbeatRequest,
    HeartbeatResponse,
    JoinRequest,
    JoinResponse,
    LeaveRequest,
    LeaveResponse,
    MembersRequest,
    MembersResponse,
    PresenceEvent,
    PresenceRequest,
    PresenceResponse,
    PresentUser,
    RestoreRequest,
    ResumeRequest,
    ResumeResponse,
    RoomEvent,
    RoomsRequest,
    RoomsResponse,
    RoomSummary,
    SessionInfo,
    SessionInfoRequest,
    TakeoverNotice,
    TakeRequest,
    TakeResponse,
    encode,
    parse_request,
)
from chat_common.subjects import gateway_control, room_presence
from chat_common.tokens import token_hash
from chat_session.metrics import LATE_REFUSED, PRESENCE, REAPED, RESTORED, RESUMES, SESSIONS
from chat_session.store import (
    Fence,
    PresenceChange,
    SessionGone,
    SessionStore,
    StoreUnavailable,
    now_ms,
)

__all__ = ["SessionHandlers", "token_hash"]

_log = logging.getLogger("chat.session")
_EMPTY = encode({})
MAX_LIST = 1000
"""The most rooms or users one operator query returns."""


class SessionHandlers:
    """The session service's endpoints, independent of how they are served."""

    def __init__(
        self,
        store: SessionStore,
        publish: Publish,
        *,
        resume_window_s: float,
        heartbeat_ttl_s: float,
        user_rate_per_s: float = 30.0,
        user_rate_burst: float = 60.0,
        max_sessions_per_user: int = 20,
        presence_list_max: int = 100,
        clock: Callable[[], int] = now_ms,
        may_expire: Callable[[], bool] = lambda: True,
    ) -> None:
        self._list_max = presence_list_max
        self._user_rate = user_rate_per_s
        self._user_burst = user_rate_burst
        self._max_sessions = max_sessions_per_user
        self._store = store
        self._publish = publish
        self._window_ms = int(resume_window_s * 1000)
        self._attached_ms = int((resume_window_s + heartbeat_ttl_s) * 1000)
        self._clock = clock
        self._may_expire = may_expire
        """False while gateways may be unable to heartbeat (NATS down, or back for less than
        the heartbeat TTL): a session's expiry passing then means nothing, so the reaper
        waits and a resume still finds the session (the gateway may have shed its clients
        for the same outage, and its detach could not reach us)."""

    async def announce(self, event: str, room_id: str, email: str, change: PresenceChange) -> None:
        """``user_joined`` / ``user_left`` to the room: the change and the count, and the
        member list when the room is small (none past ``presence_list_max`` users)."""
        data = encode(
            PresenceEvent(
                room_id=room_id, email=email, count=change.page.count, users=change.complete
            )
        )
        payload = encode(RoomEvent(event=event, data=msgspec.Raw(data)))
        await self._publish(room_presence(room_id), payload)
        PRESENCE.labels(event).inc()

    async def _open(self, req: JoinRequest | RestoreRequest) -> tuple[str, int]:
        """Open (or refresh) the request's session, attached to its connection."""
        with _refused_when_late("open"):
            return await self._store.open(
                req.session_id,
                email=req.email,
                token_hash=req.token_hash,
                sid=req.sid,
                gateway=req.gateway_id,
                conn=req.conn,
                expires=self._clock() + self._attached_ms,
            )

    async def join(self, body: bytes) -> bytes:
        req = parse_request(body, JoinRequest)
        bound, sessions = await self._open(req)
        if bound != req.email:
            raise ChatError(ErrorCode.IDENTITY_MISMATCH, "this session already has another email")
        if sessions > self._max_sessions:
            await self._store.track_user_sessions(req.email, remove=req.session_id)
            await self._store.forget(req.session_id)
            raise ChatError(ErrorCode.RATE_LIMITED, "too many connections for this user")
        with _refused_when_late("join"):
            change = await self._store.join(
                req.session_id,
                req.email,
                req.room_id,
                req.join_position,
                page=self._list_max,
                fence=_fence(req),
            )
        if change.changed:
            await self.announce("user_joined", req.room_id, req.email, change)
        page = change.page
        return encode(
            JoinResponse(users=page.users, first=change.changed, count=page.count, next=page.next)
        )

    async def leave(self, body: bytes) -> bytes:
        req = parse_request(body, LeaveRequest)
        record = await self._store.get(req.session_id)
        if record is None or req.room_id not in record.rooms:
            raise ChatError(ErrorCode.NOT_IN_ROOM, "not a member of this room")
        with _refused_when_late("leave"):
            change = await self._store.leave(
                req.session_id, record.email, req.room_id, page=self._list_max, fence=_fence(req)
            )
        if change.changed:
            await self.announce("user_left", req.room_id, record.email, change)
        return encode(LeaveResponse(last=change.changed, count=change.page.count))

    async def detach(self, body: bytes) -> bytes:
        req = parse_request(body, DetachRequest)
        # Nothing changes when another connection has taken the session over since (in one
        # step: a resume between a check and the write would be undone, its session shown
        # detached and its joins and leaves refused).
        await self._store.detach(
            req.session_id, conn=req.conn, expires=self._clock() + self._window_ms
        )
        return _EMPTY

    async def disconnect(self, body: bytes) -> bytes:
        req = parse_request(body, DisconnectRequest)
        if req.conn is not None:
            record = await self._store.get(req.session_id)
            if record is not None and record.conn != req.conn:
                return encode(DisconnectResponse(rooms=[]))  # taken over: not ours to end
        rooms = await self._end(req.session_id)
        return encode(DisconnectResponse(rooms=rooms))

    async def _end(self, session_id: str) -> list[str]:
        """Leave every room (announcing the last connection out) and delete the session."""
        record = await self._store.get(session_id)
        rooms = sorted(record.rooms) if record else []
        if record is not None:
            for room_id in rooms:
                change = await self._store.leave(
                    session_id, record.email, room_id, page=self._list_max
                )
                if change.changed:
                    await self.announce("user_left", room_id, record.email, change)
            await self._store.track_user_sessions(record.email, remove=session_id)
        await self._store.end(session_id)  # a request still on its way changes nothing now
        return rooms

    async def resume(self, body: bytes) -> bytes:
        req = parse_request(body, ResumeRequest)
        record = await self._store.get(req.session_id)
        gone = ChatError(ErrorCode.NOT_FOUND, "session expired or unknown")
        if record is None or not hmac.compare_digest(token_hash(req.token), record.token_hash):
            RESUMES.labels("unknown").inc()
            raise gone
        if req.email is not None and req.email != record.email:
            RESUMES.labels("unknown").inc()
            raise gone
        now = self._clock()
        if not await self._store.reattach(
            req.session_id,
            now=now if self._may_expire() else 0,  # 0: any session not yet reaped
            expires=now + self._attached_ms,
            gateway=req.gateway_id,
            conn=req.conn,
        ):
            RESUMES.labels("expired").inc()
            raise gone
        RESUMES.labels("resumed").inc()
        if record.conn and record.gateway and record.conn != req.conn:
            # The old connection may still be open somewhere: tell its gateway to let go.
            notice = encode(TakeoverNotice(session_id=req.session_id, conn=record.conn))
            await self._publish(gateway_control(record.gateway), notice)
        return encode(ResumeResponse(email=record.email, sid=record.sid, rooms=record.rooms))

    async def take(self, body: bytes) -> bytes:
        """Lease tokens from the user's bucket, shared by all of the user's connections."""
        req = parse_request(body, TakeRequest)
        granted, wait = await self._store.take(
            req.email, want=max(1, min(req.count, 100)), rate=self._user_rate,
            burst=self._user_burst, now=self._clock(),
        )  # fmt: skip
        return encode(TakeResponse(granted=granted, retry_after_ms=wait))

    async def heartbeat(self, body: bytes) -> bytes:
        req = parse_request(body, HeartbeatRequest)
        expires = self._clock() + self._attached_ms  # from when it was sent, however late
        known = await self._store.known(req.session_ids)
        alive = [s for s, ok in zip(req.session_ids, known, strict=True) if ok]
        await self._store.set_expiry(alive, expires=expires)
        unknown = [s for s, ok in zip(req.session_ids, known, strict=True) if not ok]
        return encode(HeartbeatResponse(unknown=unknown))

    async def restore(self, body: bytes) -> bytes:
        req = parse_request(body, RestoreRequest)
        if await self._store.get(req.session_id) is not None:
            return _EMPTY  # re-created since (by the connection's own join): nothing to do
        if await self._store.ended(req.session_id):
            raise _late("restore")
        # The rooms first, the session last: until the session exists the heartbeat calls
        # it unknown and asks again, so a restore cut short (Redis still coming back) is
        # done again whole, never left with rooms on one side only.
        for room_id, join_position in req.rooms.items():
            await self._store.join(
                req.session_id, req.email, room_id, join_position, page=self._list_max
            )
        await self._open(req)
        RESTORED.inc()
        _log.info("session restored", extra={"rooms": len(req.rooms)})
        return _EMPTY

    async def rooms(self, body: bytes) -> bytes:
        req = parse_request(body, RoomsRequest)
        rooms, truncated = await self._store.rooms(limit=_bounded_limit(req.limit))
        summaries = [RoomSummary(room_id=room, users=users) for room, users in rooms]
        return encode(RoomsResponse(rooms=summaries, truncated=truncated))

    async def presence(self, body: bytes) -> bytes:
        req = parse_request(body, PresenceRequest)
        users, page = await self._store.presence(
            req.room_id, limit=_bounded_limit(req.limit), after=req.after
        )
        present = [PresentUser(email=email, sessions=ids) for email, ids in users]
        return encode(
            PresenceResponse(room_id=req.room_id, users=present, total=page.count, next=page.next)
        )

    async def members(self, body: bytes) -> bytes:
        """A page of a room's users in join order (the gateway's ``get_members``)."""
        req = parse_request(body, MembersRequest)
        page = await self._store.members(
            req.room_id, after=req.after, limit=max(1, min(req.limit, self._list_max))
        )
        return encode(MembersResponse(users=page.users, count=page.count, next=page.next))

    async def inspect(self, body: bytes) -> bytes:
        req = parse_request(body, SessionInfoRequest)
        view = await self._store.view(req.session_id)
        if view is None:
            raise ChatError(ErrorCode.NOT_FOUND, "session expired or unknown")
        return encode(
            SessionInfo(
                session_id=req.session_id,
                email=view.email,
                sid=view.sid,
                state=view.state,
                gateway=view.gateway,
                rooms=view.rooms,
                expires_at_ms=view.expires,
            )
        )

    async def reap_once(self, *, limit: int = 100) -> int:
        """End every expired session this instance manages to claim; returns how many
        (none while sessions may not expire)."""
        if not self._may_expire():
            return 0
        now = self._clock()
        reaped = 0
        for session_id in await self._store.expired(now=now, limit=limit):
            if await self._store.claim(session_id, now=now):
                await self._end(session_id)
                REAPED.inc()
                reaped += 1
        return reaped

    async def reap_forever(self, *, interval_s: float, limit: int = 100) -> None:
        """The reaper loop (a supervised task); Redis outages are logged and waited out."""
        while True:
            try:
                reaped = await self.reap_once(limit=limit)
                SESSIONS.set(await self._store.count())
            except StoreUnavailable:
                _log.warning("reaper could not reach the session store")
                reaped = 0
            if reaped:
                _log.info("sessions reaped", extra={"count": reaped})
            if reaped < limit:
                await asyncio.sleep(interval_s)


@contextlib.contextmanager
def _refused_when_late(request: str) -> Iterator[None]:
    """The store refused a late (or misdirected) request: answered as :func:`_late`."""
    try:
        yield
    except SessionGone:
        raise _late(request) from None


def _late(request: str) -> ChatError:
    """A late (or misdirected) request refused: counted, and answered NOT_FOUND."""
    LATE_REFUSED.labels(request).inc()
    return ChatError(ErrorCode.NOT_FOUND, "session ended or held by another connection")


def _fence(req: JoinRequest | LeaveRequest) -> Fence | None:
    """The request's place among its connection's joins and leaves (unnumbered: none)."""
    return Fence(req.conn, req.op) if req.op else None


def _bounded_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIST:
        raise InvalidArgument(f"limit must be 1..{MAX_LIST}")
    return limit
