"""Leased per-user budgets at one gateway (pure: no I/O, the clock is passed in).

A user's token bucket lives in the session service and is shared by every gateway. A
gateway leases ``size`` tokens at a time and spends them here, so an event costs no round
trip. The decisions:

* **admit** while the lease holds tokens; once it is down to half, ask for the next lease
  in the background (:attr:`Decision.REFILL`), one request at a time per user, so a user
  sending steadily never waits for the session service;
* **take** (wait for a lease) only when the user has none here or it ran out;
* **refuse** without asking while a refusal's ``retry_after`` runs: a flood costs the
  session service one request per retry time, not one per event.

A lease is forgotten ``ttl_s`` after it was last granted; its unspent tokens are lost
(the shared bucket refills them at its rate). The tolerance, stated in
docs/architecture.md ("Rate limits"): every token spent was taken from the shared bucket,
so over any interval a user is admitted at most the bucket's own allowance plus what the
gateways held at its start: at most ``1.5 * size`` per gateway the user is connected to
(``2 * size`` if a lease runs dry while its refill is still out).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Decision", "Leases"]

_MAX_LEASES = 50_000


class Decision(enum.Enum):
    ADMIT = "admit"
    REFILL = "refill"
    """Admit, and ask for the next lease in the background."""
    TAKE = "take"
    """Wait for a lease, then :meth:`Leases.granted` decides."""
    REFUSE = "refuse"


@dataclass(slots=True)
class _Lease:
    tokens: int = 0
    expires: float = 0.0
    refused_until: float = 0.0
    asking: bool = False


class Leases:
    def __init__(self, *, size: int, ttl_s: float) -> None:
        self.size = size
        self._ttl_s = ttl_s
        self._leases: dict[str, _Lease] = {}

    def spend(self, email: str, now: float) -> Decision:
        """One event of ``email``: spend a leased token if there is one."""
        lease = self._leases.get(email)
        if lease is None or lease.expires <= now:
            if lease is not None and lease.refused_until > now:
                return Decision.REFUSE
            return Decision.TAKE
        if lease.tokens > 0:
            lease.tokens -= 1
            if lease.tokens * 2 <= self.size and not lease.asking and lease.refused_until <= now:
                lease.asking = True
                return Decision.REFILL
            return Decision.ADMIT
        return Decision.REFUSE if lease.refused_until > now else Decision.TAKE

    def granted(self, email: str, tokens: int, retry_after_ms: int, now: float) -> None:
        """The session service's answer to a take or a refill: ``tokens`` more (0: refused
        for ``retry_after_ms``)."""
        lease = self._leases.get(email)
        if lease is None:
            if len(self._leases) >= _MAX_LEASES:
                self._leases = {k: v for k, v in self._leases.items() if v.expires > now}
            lease = self._leases[email] = _Lease()
        elif lease.expires <= now:
            lease.tokens = 0  # a lapsed lease's tokens are gone
        lease.asking = False
        if tokens > 0:
            lease.tokens += tokens
            lease.expires = now + self._ttl_s
            lease.refused_until = 0.0
        else:
            lease.refused_until = now + max(retry_after_ms, 1) / 1000
            lease.expires = max(lease.expires, lease.refused_until)

    def admitted_by_take(self, email: str) -> bool:
        """After :meth:`granted` for a :attr:`Decision.TAKE`: spend one of the new tokens."""
        lease = self._leases.get(email)
        if lease is None or lease.tokens <= 0:
            return False
        lease.tokens -= 1
        return True

    def retry_after_ms(self, email: str, now: float) -> int:
        lease = self._leases.get(email)
        if lease is None:
            return 1
        return max(1, round((lease.refused_until - now) * 1000))

    def failed(self, email: str) -> None:
        """The session service did not answer a refill: the next half-spent lease asks again."""
        lease = self._leases.get(email)
        if lease is not None:
            lease.asking = False
