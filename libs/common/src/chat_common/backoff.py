"""How long to wait before trying again, for loops that retry until something works.

The loops that use it (connecting to NATS or Postgres, restarting a supervised task,
filling a gap, committing a batch) retry until they succeed or are cancelled, and wait
between tries for something else too (shutdown, a gap closing by itself); so each keeps its
own loop and asks :class:`Backoff` only for the next wait. Calls that are retried a
bounded number of times go through :mod:`chat_common.retry` (tenacity) instead.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Backoff"]


@dataclass(slots=True)
class Backoff:
    """Exponential backoff with full jitter: each wait is uniform in ``[0, ceiling]``; the
    ceiling starts at ``first_s`` and is multiplied by ``factor`` after each wait (at least
    ``floor_s``, at most ``cap_s``). ``jitter=False`` waits the ceiling itself."""

    first_s: float
    cap_s: float
    factor: float = 2.0
    floor_s: float = 0.0
    jitter: bool = True
    draw: Callable[[], float] = random.random
    """Uniform numbers in ``[0, 1)`` (tests pass their own)."""
    _ceiling: float = field(init=False)

    def __post_init__(self) -> None:
        self._ceiling = self.first_s

    def next(self) -> float:
        """The next wait, in seconds."""
        ceiling = self._ceiling
        self._ceiling = min(max(ceiling * self.factor, self.floor_s), self.cap_s)
        return ceiling * self.draw() if self.jitter else ceiling

    def reset(self) -> None:
        """Start again from ``first_s`` (after a success)."""
        self._ceiling = self.first_s
