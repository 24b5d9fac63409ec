"""The presence repair: a sweep that moves drifted room memberships to their session's side.

Every ``SESSION_PRESENCE_REPAIR_S`` each session instance reads both sides of every
membership (:meth:`~chat_session.store.SessionStore.room_memberships` and
:meth:`~chat_session.store.SessionStore.session_memberships`) and repairs what
:class:`~chat_session.drift.DriftWatch` says has drifted: a stale membership leaves its room,
a missing one joins it, each through the store's own leave and join (so a user's last
connection out announces ``user_left`` and a first one in ``user_joined``, exactly as a
client's own leave or join would). Two instances repairing the same drift do it once: the
second leave or join finds nothing to change and announces nothing.

The cost is one read of every membership per sweep and instance (a pipelined scan, about
the size of the presence data); drift itself only follows a lost Redis write, so a sweep
normally repairs nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from chat_session.drift import DriftWatch
from chat_session.metrics import DRIFT_REPAIRED
from chat_session.store import PresenceChange, SessionStore, StoreUnavailable

__all__ = ["PresenceRepair"]

_log = logging.getLogger("chat.session.repair")

Announce = Callable[[str, str, str, PresenceChange], Awaitable[None]]


class PresenceRepair:
    def __init__(self, store: SessionStore, announce: Announce, *, page: int) -> None:
        self._store = store
        self._announce = announce
        self._page = page
        self._watch = DriftWatch()

    async def sweep(self) -> int:
        """One observation, and the repair of what drifted since the last; how many
        memberships were repaired."""
        room_side = await self._store.room_memberships()
        session_side = await self._store.session_memberships()
        repairs = self._watch.observe(room_side, session_side)
        for room_id, email, session_id in repairs.leave:
            _log.warning("stale membership leaves", extra={"room": room_id, "session": session_id})
            change = await self._store.leave(session_id, email, room_id, page=self._page)
            if change.changed:
                await self._announce("user_left", room_id, email, change)
            DRIFT_REPAIRED.labels("leave").inc()
        for (room_id, email, session_id), position in repairs.join.items():
            _log.warning("missing membership joins", extra={"room": room_id, "session": session_id})
            change = await self._store.join(session_id, email, room_id, position, page=self._page)
            if change.changed:
                await self._announce("user_joined", room_id, email, change)
            DRIFT_REPAIRED.labels("join").inc()
        repaired = len(repairs.leave) + len(repairs.join)
        if repaired:
            _log.warning(
                "presence drift repaired",
                extra={"left": len(repairs.leave), "joined": len(repairs.join)},
            )
        return repaired

    async def run(self, *, interval_s: float) -> None:
        """The sweep loop (a supervised task); Redis outages are logged and waited out."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.sweep()
            except StoreUnavailable:
                _log.warning("presence repair could not reach the session store")
