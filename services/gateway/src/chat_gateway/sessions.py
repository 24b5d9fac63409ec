"""Keeping this gateway's sessions alive in the session service.

Every ``GATEWAY_SESSION_HEARTBEAT_S`` the gateway sends the ids of its live sessions (in
chunks). The answer lists the ones the store does not know — Redis was restarted empty or
wiped — and the gateway re-registers each of them (identity, rooms, positions) without
announcing anything, so presence is rebuilt and no client notices. A session the session
service *ended* (it expired while this gateway could not heartbeat it, and its rooms were
told the user left) is not brought back: its client is closed with 4010 and starts afresh.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from chat_common.errors import ChatError, ErrorCode
from chat_common.schemas import HeartbeatRequest, RestoreRequest
from chat_common.tokens import token_hash
from chat_gateway.backend import Backend
from chat_gateway.closecodes import CLOSE_SESSION_ENDED
from chat_gateway.connection.client import Client

__all__ = ["SessionKeeper"]

_log = logging.getLogger("chat.gateway.sessions")
_CHUNK = 500


class SessionKeeper:
    def __init__(self, backend: Backend, *, gateway_id: str, interval_s: float) -> None:
        self._backend = backend
        self._gateway_id = gateway_id
        self._interval = interval_s

    async def run(self, clients: Callable[[], Iterable[Client]]) -> None:
        """The heartbeat loop (a supervised task)."""
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.beat(clients())
            except ChatError as exc:
                _log.warning("session heartbeat failed", extra={"code": exc.code.value})

    async def beat(self, clients: Iterable[Client]) -> int:
        """One heartbeat round; returns how many sessions were re-registered."""
        live = {
            c.session.session_id: c
            for c in clients
            if c.session.held and c.session.email and not c.closing
        }
        ids = list(live)
        restored = 0
        for start in range(0, len(ids), _CHUNK):
            reply = await self._backend.heartbeat(
                HeartbeatRequest(
                    gateway_id=self._gateway_id, session_ids=ids[start : start + _CHUNK]
                )
            )
            for session_id in reply.unknown:
                client = live[session_id]
                session = client.session
                if session.email is None:
                    continue
                try:
                    await self._backend.restore(
                        RestoreRequest(
                            session_id=session_id,
                            gateway_id=self._gateway_id,
                            email=session.email,
                            token_hash=token_hash(session.token),
                            sid=session.socket_id,
                            rooms={
                                room: client.rooms.join_positions.get(room, 0)
                                for room in client.rooms.rooms
                            },
                            conn=client.connection_key,
                        )
                    )
                except ChatError as exc:
                    if exc.code is not ErrorCode.NOT_FOUND:
                        raise
                    # Ended there (expired while we could not heartbeat it): its rooms were
                    # told the user left, so the client starts afresh rather than linger.
                    client.close(CLOSE_SESSION_ENDED, "session ended")
                    continue
                restored += 1
        if restored:
            _log.info("sessions re-registered", extra={"count": restored})
        return restored
