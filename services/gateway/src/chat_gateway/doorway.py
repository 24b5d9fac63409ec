"""Coming in and going out: authentication, the Socket.IO CONNECT (with connection state
recovery), the native handshake, and what a connection leaves behind when it ends.

* **Authentication** is all or nothing: a refused token changes nothing on the connection,
  and a token naming another user than the connection's is ``IDENTITY_MISMATCH``. In
  development mode (no verifier) every connection is authenticated as it comes.
* **Recovery**: a CONNECT that presents a ``pid`` resumes that session
  (:mod:`chat_gateway.resume`); the reply goes out first, then what was missed.
* **Users**: a connection whose user is known gets its user's stream
  (:mod:`chat_gateway.users.stream`); a recovered session gets its rooms' read state.
* **Leaving**: the connection leaves its rooms and its user's stream at this gateway; in the session service its
  session is kept resumable (a drop) or ended (a goodbye), unless a resume elsewhere took it.
"""

from __future__ import annotations

import logging

from chat_common.errors import ChatError, ErrorCode
from chat_common.schemas import DetachRequest, DisconnectRequest
from chat_gateway.auth import AuthError, JwtVerifier
from chat_gateway.backend import Backend
from chat_gateway.connection.client import Client
from chat_gateway.connection.dispatcher import Connected, Resume
from chat_gateway.metrics import RESUMES
from chat_gateway.resume import Resumer
from chat_gateway.rooms.hub import RoomHub
from chat_gateway.users.inbox import Inbox
from chat_gateway.users.stream import UserStreams

__all__ = ["Doorway"]

_log = logging.getLogger("chat.gateway.doorway")


class Doorway:
    """How connections come in and go out."""

    def __init__(
        self,
        backend: Backend,
        hub: RoomHub,
        resumer: Resumer,
        *,
        verifier: JwtVerifier | None,
        write_cap: int,
        users: UserStreams,
        inbox: Inbox,
    ) -> None:
        self._backend = backend
        self._hub = hub
        self._resumer = resumer
        self._verifier = verifier
        """``None`` in development mode (no authentication)."""
        self._write_cap = write_cap
        self._users = users
        self._inbox = inbox
        """The slow-consumer limit an authenticated connection gets."""

    @property
    def dev_mode(self) -> bool:
        return self._verifier is None

    def authenticate(self, client: Client, token: object) -> None:
        """Verify ``token`` for ``client`` (a no-op in development mode)."""
        if self._verifier is None:
            client.authenticate(None, write_cap=self._write_cap)
            return
        try:
            identity = self._verifier.verify(token)
        except AuthError as exc:
            _log.info(
                "authentication refused",
                extra={"client": client.session.socket_id, "reason": exc.reason},
            )
            raise ChatError(ErrorCode.UNAUTHENTICATED, "invalid or expired token") from None
        known = client.session.email or (client.identity.email if client.identity else None)
        if known is not None and known != identity.email:
            raise ChatError(ErrorCode.IDENTITY_MISMATCH, "the token names another user")
        client.authenticate(identity, write_cap=self._write_cap)
        self._users.attach(client)

    def open_native(self, client: Client, authorization: str) -> bool:
        """Authenticate from the handshake's ``Authorization: Bearer`` (in development mode,
        at once); without one the client authenticates later with ``auth``."""
        if self._verifier is not None and not authorization.startswith("Bearer "):
            return True
        try:
            self.authenticate(client, authorization.removeprefix("Bearer ").strip())
        except ChatError:
            return False
        return True

    async def connect(
        self, client: Client, *, token: object, resume: Resume | None, offsets: bool
    ) -> Connected:
        """A Socket.IO CONNECT: authenticate, then recover the session asked for."""
        client.rooms.offsets = offsets
        self._users.detach(client)  # a namespace reconnect: whoever it was before
        self._inbox.unfollow(client)
        self.authenticate(client, token)
        if resume is None:
            return Connected(dropped=[])
        plan = await self._resumer.resume(
            client, session_id=resume.session_id, token=resume.token, positions=resume.positions
        )
        RESUMES.labels("recovered" if plan else "not_recovered").inc()
        if plan is None:
            return Connected(dropped=[])
        self._users.attach(client)
        snapshot = await self._users.read_states(client, plan.room_ids)

        def then() -> None:
            self._resumer.finish(plan)
            for state in self._users.current(client, snapshot):
                client.write_frame(self._users.read_state_frame(client, state))

        return Connected(dropped=plan.dropped, then=then)

    async def disconnected(self, client: Client, *, resumable: bool) -> None:
        """The connection is gone: leave every room locally; in the session service, keep
        the session resumable (a drop) or end it (the client said goodbye)."""
        self._users.detach(client)
        self._inbox.unfollow(client)
        for room_id in client.rooms.leave_all():
            await self._hub.remove(client, room_id)
        session = client.session
        if not session.held:
            return
        try:
            if resumable:
                await self._backend.detach(
                    DetachRequest(session_id=session.session_id, conn=client.connection_key)
                )
            else:
                await self._backend.disconnect(
                    DisconnectRequest(session_id=session.session_id, conn=client.connection_key)
                )
        except ChatError as exc:
            _log.warning(
                "disconnect not recorded",
                extra={"client": session.socket_id, "code": exc.code.value},
            )
