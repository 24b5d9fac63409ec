"""The per-user bound on typing signals a gateway publishes (pure: times are passed in).

One token bucket per user (``rate`` tokens per second, at most ``burst`` saved up), shared
by the user's connections at this gateway and their rooms. A client that renews every
3 seconds while typing and says when it stops spends well under one token a second; one
that sends ``typing`` on every keystroke is refused past the burst. Buckets that have
refilled are forgotten when the table grows past ``max_users``, so memory follows the users
typing now, not every user ever seen.
"""

from __future__ import annotations

__all__ = ["TypingRate"]


class TypingRate:
    """Token buckets by user id; see the module docstring."""

    __slots__ = ("_buckets", "_burst", "_max_users", "_rate")

    def __init__(self, *, rate: float, burst: float, max_users: int = 10_000) -> None:
        self._rate = rate
        self._burst = burst
        self._max_users = max_users
        self._buckets: dict[str, tuple[float, float]] = {}  # user id -> (tokens, at)

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, user_id: str, now: float) -> float:
        """One signal of ``user_id``: 0.0 if allowed, else the seconds until one would be."""
        tokens, at = self._buckets.get(user_id, (self._burst, now))
        tokens = min(self._burst, tokens + (now - at) * self._rate)
        if tokens < 1.0:
            self._buckets[user_id] = (tokens, now)
            return (1.0 - tokens) / self._rate
        if user_id not in self._buckets and len(self._buckets) >= self._max_users:
            self._forget_full(now)
        self._buckets[user_id] = (tokens - 1.0, now)
        return 0.0

    def _forget_full(self, now: float) -> None:
        """Drop the buckets that have refilled (they are as good as new ones)."""
        refill_s = self._burst / self._rate
        self._buckets = {u: b for u, b in self._buckets.items() if now - b[1] < refill_s}
