"""How much one connection may make the gateway read (pure).

Every inbound WebSocket frame costs one token, plus one per 8 KiB of payload: events,
Engine.IO pings and pongs, Socket.IO acks and namespace packets, WebSocket pings and pongs
alike. The bucket refills at ``rate``
per second up to ``burst``. A connection that runs it dry is not read until it has paid its
debt back: :meth:`ReadBudget.charge` returns how long to pause reading, and the kernel's
TCP flow control then holds the sender back. A connection that stays over budget for
``cut_after_s`` in a row (an *abuse episode* ends only when its bucket is full again) is to
be cut.

The event rate limit (``RATE_LIMITED`` answers) is a separate, stricter bucket: this one
only bounds how much of the gateway's loop a single peer can take, whatever it sends.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["CUT", "ReadBudget", "Verdict"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do after a charge: keep reading, pause for ``pause_s``, or cut."""

    pause_s: float = 0.0
    cut: bool = False


_READ_ON = Verdict()
CUT = Verdict(cut=True)


class ReadBudget:
    __slots__ = ("_burst", "_clock", "_cut_after", "_episode", "_rate", "_stamp", "_tokens")

    def __init__(
        self,
        *,
        rate: float,
        burst: float,
        cut_after_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1 or cut_after_s <= 0:
            raise ValueError("rate and cut_after_s must be positive, burst at least 1")
        self._rate = rate
        self._burst = burst
        self._cut_after = cut_after_s
        self._clock = clock
        self._tokens = burst
        self._stamp = clock()
        self._episode: float | None = None
        """When the current abuse episode began (``None``: the connection is within budget)."""

    @property
    def tokens(self) -> float:
        return self._tokens

    def charge(self, frames: int) -> Verdict:
        """Pay ``frames`` tokens for what was just read."""
        now = self._clock()
        tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if tokens >= self._burst:
            self._episode = None
        tokens -= frames
        self._tokens = tokens
        if tokens >= 0:
            return _READ_ON
        if self._episode is None:
            self._episode = now
        elif now - self._episode >= self._cut_after:
            return CUT
        return Verdict(pause_s=-tokens / self._rate)
