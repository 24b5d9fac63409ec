"""Client events: join, send_message, get_history, leave, and the disconnect cleanup.

:meth:`EventHandlers.dispatch` is the error boundary of every client event: whatever
happens, the client gets an ack ``{ok: false, error: {code, message}}`` (or an ``error``
event when it asked for no ack) and the connection stays up. Unexpected exceptions are
logged and answered with ``INTERNAL``; their details never reach the client.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from chat_common.boundary import guarded
from chat_common.errors import ChatError, ErrorCode, InvalidArgument
from chat_common.schemas import (
    AppendRequest,
    DetachRequest,
    DisconnectRequest,
    FetchRequest,
    JoinRequest,
    LeaveRequest,
    MembersRequest,
    encode,
    parse_value,
)
from chat_common.tokens import token_hash
from chat_common.tracing import SpanKind, tracer
from chat_gateway.appender import AppendBatcher
from chat_gateway.appendplan import Slot
from chat_gateway.auth import AuthError, JwtVerifier, room_allowed
from chat_gateway.backend import Backend
from chat_gateway.client import Client
from chat_gateway.metrics import ACK_SECONDS, EVENTS, RATE_LIMITED, RESUMES
from chat_gateway.payloads import (
    GetHistoryPayload,
    GetMembersPayload,
    JoinPayload,
    LeavePayload,
    ResumePayload,
    SendMessagePayload,
)
from chat_gateway.protocol.messages import BadEvent, ClientEvent
from chat_gateway.resume import Resumer
from chat_gateway.rooms import RoomHub
from chat_gateway.settings import GatewaySettings
from chat_gateway.userlimit import UserLimiter

__all__ = ["Answer", "EventHandlers"]

_log = logging.getLogger("chat.gateway.events")
_tracer = tracer("chat.gateway")


@dataclass(frozen=True, slots=True)
class Reply:
    """A handler's answer, and what to do once it has been sent."""

    body: dict[str, Any]
    then: Callable[[], None] | None = None
    raw: bytes | None = None
    """The answer's JSON when already encoded (``body`` is then not used)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """What to write for one event (``frame`` is ``None`` when nothing is: no ack was asked
    for), what to do once written, and for the ack latency metric its label and start."""

    frame: bytes | None
    then: Callable[[], None] | None = None
    label: str | None = None
    received: float = 0.0

    async def write(self, client: Client) -> None:
        """Write the answer, then run its follow-up."""
        if self.frame is not None:
            await client.send(self.frame)
            if self.label is not None:
                ACK_SECONDS.labels(self.label).observe(time.perf_counter() - self.received)
        if self.then is not None:
            self.then()


class EventHandlers:
    """Protocol-independent handling of client events."""

    def __init__(
        self,
        settings: GatewaySettings,
        backend: Backend,
        hub: RoomHub,
        *,
        verifier: JwtVerifier | None,
        appender: AppendBatcher,
        users: UserLimiter,
        resumer: Resumer,
    ) -> None:
        self._s = settings
        self._backend = backend
        self._appender = appender
        self._hub = hub
        self.verifier = verifier
        """``None`` in development mode (no authentication)."""
        self._users = users
        self.resumer = resumer
        self._table: dict[str, Callable[[Client, object], Awaitable[Reply]]] = {
            "join": self.join,
            "send_message": self.send_message,
            "get_history": self.get_history,
            "get_members": self.get_members,
            "leave": self.leave,
            "resume": self.resume,
            "auth": self.auth,
        }

    def reserve(self, client: Client, event: ClientEvent | BadEvent) -> Slot[Any] | None:
        """The event's place in the sender's append order (``send_message`` only); reserve
        in arrival order, then :meth:`dispatch` with it."""
        if isinstance(event, ClientEvent) and event.name == "send_message":
            return self._appender.reserve(client.key)
        return None

    async def dispatch(
        self, client: Client, event: ClientEvent | BadEvent, *, slot: Slot[Any] | None = None
    ) -> Answer:
        """Run one event; whatever happens, the answer to write (written by the caller, so
        that a connection's answers go out in the order its events came)."""
        try:
            return await self._dispatch(client, event, slot)
        finally:
            if slot is not None:
                self._appender.cancel(slot)  # a no-op once the append went out

    async def _dispatch(
        self, client: Client, event: ClientEvent | BadEvent, slot: Slot[Any] | None
    ) -> Answer:
        if isinstance(event, BadEvent):
            error = ChatError(event.code, event.message)
            EVENTS.labels("malformed", error.code.value).inc()
            return self._error_answer(client, event.event, event.ack_id, error)
        received = time.perf_counter()
        handler = self._table.get(event.name)
        refusal = self._admission(client, event.name)
        user = client.identity.email if client.identity else client.email
        if refusal is None and user is not None:
            refusal = await self._users.admit(user)
            if refusal is not None:
                RATE_LIMITED.inc()
        if refusal is not None:
            EVENTS.labels(event.name if handler else "unknown", refusal.code.value).inc()
            return self._error_answer(client, event.name, event.ack_id, refusal)
        label = event.name if handler else "unknown"
        attributes = {
            "chat.event": event.name if handler else "unknown",
            "chat.protocol": client.protocol,
        }
        if isinstance(event.data, dict) and isinstance(room := event.data.get("roomId"), str):
            attributes["chat.room"] = room[:64]
        with _tracer.start_as_current_span(
            f"chat {attributes['chat.event']}", kind=SpanKind.SERVER, attributes=attributes
        ):
            if handler is None:
                outcome: Reply | ChatError = ChatError(ErrorCode.UNKNOWN_EVENT, "unknown event")
            else:
                data = event.data
                call = (
                    (lambda: self.send_message(client, data, slot))
                    if slot is not None and handler == self.send_message
                    else (lambda: handler(client, data))
                )
                outcome = await guarded(
                    call,
                    what="client event",
                    log_extra={"client_event": event.name, "client": client.sid},
                )
            if isinstance(outcome, ChatError):
                EVENTS.labels(label, outcome.code.value).inc()
                return self._error_answer(client, event.name, event.ack_id, outcome)
        EVENTS.labels(label, "OK").inc()
        if event.ack_id is None:
            return Answer(None, outcome.then)
        body = outcome.raw if outcome.raw is not None else encode(outcome.body)
        return Answer(client.encode_ack(event.ack_id, body), outcome.then, label, received)

    def _admission(self, client: Client, name: str) -> ChatError | None:
        """Authentication first, then the connection's rate limit."""
        if self.verifier is not None and not client.authenticated and name != "auth":
            return ChatError(ErrorCode.UNAUTHENTICATED, "authenticate first")
        wait = client.bucket.take()
        if wait > 0:
            RATE_LIMITED.inc()
            return ChatError(
                ErrorCode.RATE_LIMITED,
                "too many events; slow down",
                retry_after_ms=int(wait * 1000) + 1,
            )
        return None

    def authenticate(self, client: Client, token: object) -> None:
        """Verify ``token`` for ``client`` (a no-op in development mode)."""
        if self.verifier is None:
            client.authenticate(None, write_cap=self._s.slow_consumer_bytes)
            return
        try:
            identity = self.verifier.verify(token)
        except AuthError as exc:
            _log.info("authentication refused", extra={"client": client.sid, "reason": exc.reason})
            raise ChatError(ErrorCode.UNAUTHENTICATED, "invalid or expired token") from None
        # All or nothing: a refused token changes nothing on the connection.
        known = client.email or (client.identity.email if client.identity else None)
        if known is not None and known != identity.email:
            raise ChatError(ErrorCode.IDENTITY_MISMATCH, "the token names another user")
        client.authenticate(identity, write_cap=self._s.slow_consumer_bytes)

    async def auth(self, client: Client, data: object) -> Reply:
        """Native protocol: ``auth {token}`` (or a fresh token before the old expires).

        A fresh token's room policy applies at once: rooms it no longer allows are left
        and named in ``droppedRooms``."""
        token = data.get("token") if isinstance(data, dict) else None
        self.authenticate(client, token)
        dropped = [r for r in sorted(client.rooms) if not room_allowed(client.identity, r)]
        for room_id in dropped:
            await self._leave_room(client, room_id)
        email = client.identity.email if client.identity else None
        return Reply({"ok": True, "email": email, "droppedRooms": dropped})

    def refuse_closing(self, client: Client, event: ClientEvent | BadEvent) -> Answer:
        """An event that arrived after shutdown began: ``UNAVAILABLE``, retry elsewhere."""
        name = event.name if isinstance(event, ClientEvent) else event.event
        error = ChatError(ErrorCode.UNAVAILABLE, "server restarting; retry after reconnecting")
        return self._error_answer(client, name, event.ack_id, error)

    @staticmethod
    def _error_answer(
        client: Client, name: str | None, ack_id: int | None, error: ChatError
    ) -> Answer:
        if ack_id is not None:
            body = {"ok": False, "error": error.to_dict()}
            return Answer(client.encode_ack(ack_id, encode(body)))
        event = {**error.to_dict(), "event": name}
        return Answer(client.encode_event("error", encode(event)))

    def _require_member(self, client: Client, room_id: str) -> None:
        if room_id not in client.rooms:
            raise ChatError(ErrorCode.NOT_IN_ROOM, "join the room first")

    async def join(self, client: Client, data: object) -> Reply:
        p = parse_value(data, JoinPayload)
        if client.email is not None and client.email != p.email:
            raise ChatError(ErrorCode.IDENTITY_MISMATCH, "this connection has another email")
        if client.identity is not None and client.identity.email != p.email:
            raise ChatError(ErrorCode.IDENTITY_MISMATCH, "the email differs from the token's")
        if not room_allowed(client.identity, p.room_id):
            raise ChatError(ErrorCode.FORBIDDEN, "the token does not allow this room")
        if p.room_id not in client.rooms and len(client.rooms) >= self._s.max_rooms_per_connection:
            raise InvalidArgument("too many rooms on this connection")
        member = await self._hub.add_pending(client, p.room_id)
        client.begin_session()
        joined = None
        try:
            page = await self._backend.fetch(
                FetchRequest(room_id=p.room_id, limit=max(self._s.join_history_limit, 1))
            )
            joined = await self._backend.join(
                JoinRequest(
                    session_id=client.session_id,
                    gateway_id=self._s.instance_id,
                    email=p.email,
                    room_id=p.room_id,
                    token_hash=token_hash(client.token),
                    sid=client.sid,
                    join_position=page.last_seq,
                    conn=client.key,
                )
            )
        except BaseException:
            if p.room_id not in client.rooms:
                await self._hub.remove(client, p.room_id)
                if joined is not None:
                    await self._undo_join(client, p.room_id)
            raise
        client.joined(p.room_id, email=p.email, join_position=page.last_seq)
        history = page.messages[-self._s.join_history_limit :] if self._s.join_history_limit else []
        body = {
            "ok": True,
            "sessionId": client.session_id,
            "resumeToken": client.token,
            "roomId": p.room_id,
            "users": joined.users,
            "userCount": joined.count,
            "usersNext": joined.next,
            "history": history,
        }
        return Reply(
            body, lambda: self._hub.activate(p.room_id, member, join_position=page.last_seq)
        )

    async def resume(self, client: Client, data: object) -> Reply:
        """Native protocol: take over a dropped session and receive what was missed."""
        p = parse_value(data, ResumePayload)
        if client.session_used:
            raise InvalidArgument("resume must come before any join on a connection")
        plan = await self.resumer.resume(
            client, session_id=p.session_id, token=p.resume_token, positions=dict(p.last_seq or {})
        )
        body: dict[str, Any] = {
            "ok": True,
            "recovered": plan is not None,
            "sessionId": client.session_id,
            "resumeToken": client.token,
        }
        RESUMES.labels("recovered" if plan else "not_recovered").inc()
        if plan is None:
            return Reply(body)
        body |= {"email": client.email, "rooms": plan.room_ids, "droppedRooms": plan.dropped}
        return Reply(body, lambda: self.resumer.finish(plan))

    async def send_message(
        self, client: Client, data: object, slot: Slot[Any] | None = None
    ) -> Reply:
        """Commit the message (in the sender's order: ``slot``) and ack with it, spliced as
        the JSON history stored, the same bytes the room's members receive."""
        p = parse_value(data, SendMessagePayload)
        self._require_member(client, p.room_id)
        if not 1 <= len(p.text) <= self._s.max_text_length:
            raise InvalidArgument(f"text must be 1 to {self._s.max_text_length} characters")
        assert client.email is not None
        req = AppendRequest(
            room_id=p.room_id,
            email=client.email,
            text=p.text,
            client_msg_id=p.client_msg_id or uuid.uuid4().hex,
            client_supplied=p.client_msg_id is not None,
            received_at=time.time(),
        )
        message = await self._appender.append(slot or self._appender.reserve(client.key), req)
        return Reply({}, raw=b'{"ok":true,"message":' + message + b"}")

    async def get_history(self, client: Client, data: object) -> Reply:
        p = parse_value(data, GetHistoryPayload)
        self._require_member(client, p.room_id)
        page = await self._backend.fetch(
            FetchRequest(
                room_id=p.room_id,
                before_seq=p.before_seq,
                limit=p.limit or 50,
                replica_ok=p.before_seq is not None,  # scroll-back; the newest page is not
            )
        )
        return Reply({"ok": True, "messages": page.messages})

    async def get_members(self, client: Client, data: object) -> Reply:
        """A page of the room's users in join order; ``next`` is ``after`` for the next
        page (``null`` after the last)."""
        p = parse_value(data, GetMembersPayload)
        self._require_member(client, p.room_id)
        page = await self._backend.members(
            MembersRequest(room_id=p.room_id, after=p.after, limit=p.limit or 100)
        )
        return Reply(
            {"ok": True, "roomId": p.room_id, "users": page.users, "userCount": page.count,
             "next": page.next}
        )  # fmt: skip

    async def leave(self, client: Client, data: object) -> Reply:
        p = parse_value(data, LeavePayload)
        self._require_member(client, p.room_id)
        await self._leave_room(client, p.room_id)
        return Reply({"ok": True})

    async def _leave_room(self, client: Client, room_id: str) -> None:
        # Hold the client's events of the room until the session service has recorded the
        # leave: on success they are dropped, on failure delivered, never lost or repeated.
        self._hub.suspend(client, room_id)
        try:
            await self._backend.leave(LeaveRequest(session_id=client.session_id, room_id=room_id))
        except ChatError as exc:
            if exc.code is not ErrorCode.NOT_IN_ROOM:
                self._hub.unsuspend(client, room_id)
                raise
        client.left(room_id)
        await self._hub.remove(client, room_id)

    async def _undo_join(self, client: Client, room_id: str) -> None:
        try:
            await self._backend.leave(LeaveRequest(session_id=client.session_id, room_id=room_id))
        except ChatError as exc:
            _log.warning("could not undo a failed join", extra={"code": exc.code.value})

    async def disconnected(self, client: Client, *, resumable: bool) -> None:
        """The connection is gone: leave every room locally; in the session service, keep
        the session resumable (a drop) or end it (the client said goodbye)."""
        for room_id in client.leave_all():
            await self._hub.remove(client, room_id)
        if not client.session_used or client.taken_over:
            return
        try:
            if resumable:
                await self._backend.detach(
                    DetachRequest(session_id=client.session_id, conn=client.key)
                )
            else:
                await self._backend.disconnect(
                    DisconnectRequest(session_id=client.session_id, conn=client.key)
                )
        except ChatError as exc:
            _log.warning(
                "disconnect not recorded", extra={"client": client.sid, "code": exc.code.value}
            )
