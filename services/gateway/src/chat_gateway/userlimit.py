"""Per-user rate limiting shared by every gateway, with local leases.

The user's token bucket lives in the session service (Redis). Asking it for every event
would add a round trip to each message, so a gateway leases a few tokens at a time
(``GATEWAY_USER_LEASE``) and spends them locally; an unspent lease lapses after a second.
If the session service cannot answer, events are let through (the per-connection bucket
still applies): an outage of the limiter must not stop the chat.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from chat_common.errors import ChatError, ErrorCode
from chat_common.schemas import TakeRequest, TakeResponse

__all__ = ["UserLimiter"]

_log = logging.getLogger("chat.gateway.userlimit")
_LEASE_TTL_S = 1.0
_MAX_LEASES = 50_000


@dataclass(slots=True)
class _Lease:
    tokens: int
    expires: float


Take = Callable[[TakeRequest], Awaitable[TakeResponse]]
"""The session service's ``take``: lease tokens from a user's shared bucket."""


class UserLimiter:
    def __init__(self, take: Take, *, lease: int) -> None:
        self._take = take
        self._lease = lease
        self._leases: dict[str, _Lease] = {}

    async def admit(self, email: str) -> ChatError | None:
        """``None`` when the user may send one more event, else ``RATE_LIMITED``."""
        now = time.monotonic()
        lease = self._leases.get(email)
        if lease is not None and lease.tokens > 0 and lease.expires > now:
            lease.tokens -= 1
            return None
        try:
            granted = await self._take(TakeRequest(email=email, count=self._lease))
        except ChatError as exc:
            _log.warning(
                "user limiter unavailable; letting events through", extra={"code": exc.code.value}
            )
            return None
        if granted.granted == 0:
            return ChatError(
                ErrorCode.RATE_LIMITED,
                "too many events from this user; slow down",
                retry_after_ms=max(granted.retry_after_ms, 1),
            )
        if len(self._leases) > _MAX_LEASES:
            self._leases = {k: v for k, v in self._leases.items() if v.expires > now}
        self._leases[email] = _Lease(granted.granted - 1, now + _LEASE_TTL_S)
        return None
