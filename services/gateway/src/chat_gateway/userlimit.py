"""Per-user rate limiting shared by every gateway: leased budgets (:mod:`userlease`) over
the session service's bucket.

An event spends a token leased here; the next lease is asked for in the background once
half is spent, so a steady sender never waits on the session service. Only a user with no
lease here waits for one (its first event, or after a burst emptied it). If the session
service cannot answer, events are let through (the per-connection bucket still applies):
an outage of the limiter must not stop the chat.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from chat_common.errors import ChatError, ErrorCode
from chat_common.schemas import TakeRequest, TakeResponse
from chat_gateway.userlease import Decision, Leases

__all__ = ["UserLimiter"]

_log = logging.getLogger("chat.gateway.userlimit")

Take = Callable[[TakeRequest], Awaitable[TakeResponse]]
"""The session service's ``take``: lease tokens from a user's shared bucket."""


class UserLimiter:
    def __init__(
        self,
        take: Take,
        *,
        lease: int,
        ttl_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._take = take
        self._leases = Leases(size=lease, ttl_s=ttl_s)
        self._clock = clock
        self._refills: set[asyncio.Task[None]] = set()

    async def admit(self, email: str) -> ChatError | None:
        """``None`` when the user may send one more event, else ``RATE_LIMITED``."""
        decision = self._leases.spend(email, self._clock())
        if decision is Decision.ADMIT:
            return None
        if decision is Decision.REFILL:
            task = asyncio.create_task(self._refill(email), name="user-lease")
            self._refills.add(task)
            task.add_done_callback(self._refills.discard)
            return None
        if decision is Decision.TAKE:
            try:
                await self._ask(email)
            except ChatError as exc:
                _unavailable(exc)
                return None
            if self._leases.admitted_by_take(email):
                return None
        return ChatError(
            ErrorCode.RATE_LIMITED,
            "too many events from this user; slow down",
            retry_after_ms=self._leases.retry_after_ms(email, self._clock()),
        )

    async def _ask(self, email: str) -> None:
        granted = await self._take(TakeRequest(email=email, count=self._leases.size))
        self._leases.granted(email, granted.granted, granted.retry_after_ms, self._clock())

    async def _refill(self, email: str) -> None:
        try:
            await self._ask(email)
        except ChatError as exc:
            self._leases.failed(email)
            _unavailable(exc)
        except Exception:
            self._leases.failed(email)
            _log.exception("user lease refill failed")


def _unavailable(exc: ChatError) -> None:
    _log.warning("user limiter unavailable; letting events through", extra={"code": exc.code.value})
