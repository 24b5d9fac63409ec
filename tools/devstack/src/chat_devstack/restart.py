"""When to restart a part of the local stack that died, and after how long: a pure schedule.

``chat-stack run`` restarts a process that exits on its own, as compose's
``restart: always`` or a Kubernetes pod would. The delay grows with the crashes in a row:
``initial_s``, multiplied by ``factor`` each time, up to ``cap_s``; each delay is then cut by
up to ``jitter`` of itself at random, so parts that died together do not all come back in
the same instant. A process that stayed ready for ``stable_s`` starts a new streak at
``initial_s``. After ``loud_after`` crashes in a row the part is *crash looping*: it is
still restarted at the capped pace, but the caller says so loudly.

There is no give-up. On a developer's machine a part that cannot start usually waits for
something the developer fixes meanwhile (a port in use, a full disk, a server that was
stopped), and a stack that gave up would leave the rest running without it; Ctrl-C is the
way out. Only a failed first start of the stack ends ``chat-stack`` (exit code 1).

Nothing here sleeps, reads a clock or draws a random number: the caller passes the times
and the random draw, so tests drive it with a fake clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Restart", "RestartPolicy", "RestartTracker"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RestartPolicy:
    """How soon a dead process is restarted (see the module docstring)."""

    initial_s: float = 0.5
    """Delay before the first restart of a streak."""
    factor: float = 2.0
    """Each further crash in a row multiplies the delay by this."""
    cap_s: float = 30.0
    """The delay never grows beyond this."""
    jitter: float = 0.2
    """Each delay is cut by up to this fraction of itself, at random (0: none)."""
    stable_s: float = 60.0
    """Seconds ready after which the next crash starts a new streak."""
    loud_after: int = 5
    """Crashes in a row from which the part counts as crash looping."""

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.cap_s:
            raise ValueError("need 0 < initial_s <= cap_s")
        if self.factor < 1:
            raise ValueError("factor must be at least 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        if self.stable_s <= 0 or self.loud_after < 1:
            raise ValueError("need stable_s > 0 and loud_after >= 1")

    def nominal_delay(self, streak: int) -> float:
        """The delay before restart number ``streak`` of a streak (from 1), before jitter."""
        if streak < 1:
            raise ValueError("streak counts from 1")
        try:
            grown = self.initial_s * self.factor ** (streak - 1)
        except OverflowError:
            grown = math.inf
        return min(self.cap_s, grown)

    def delay(self, streak: int, draw: float) -> float:
        """The jittered delay; ``draw`` is uniform in ``[0, 1)`` (0 gives the nominal delay)."""
        return self.nominal_delay(streak) * (1 - self.jitter * draw)


@dataclass(frozen=True, slots=True)
class Restart:
    """What to do after one exit: restart after ``delay_s`` seconds."""

    delay_s: float
    streak: int
    """Crashes in a row, this one included (the attempt number of the coming restart)."""
    total: int
    """Crashes since the tracker was made, this one included."""
    uptime_s: float
    """How long the process had been ready (0 if it never was)."""
    crash_looping: bool
    """``streak >= loud_after``: it keeps dying without staying up."""


class RestartTracker:
    """One part's crash history; call :meth:`ready` when it is up, :meth:`exited` when not."""

    def __init__(self, policy: RestartPolicy | None = None) -> None:
        self.policy = policy or RestartPolicy()
        self.streak = 0
        self.total = 0
        self._ready_at: float | None = None

    def ready(self, now: float) -> None:
        """The process is (again) ready at time ``now``."""
        self._ready_at = now

    def exited(self, now: float, *, draw: float) -> Restart:
        """The process exited (or failed to start) at ``now``: when to restart it.

        ``draw`` is a random number in ``[0, 1)`` for the jitter.
        """
        uptime = 0.0 if self._ready_at is None else max(0.0, now - self._ready_at)
        self._ready_at = None
        if uptime >= self.policy.stable_s:
            self.streak = 0
        self.streak += 1
        self.total += 1
        return Restart(
            delay_s=self.policy.delay(self.streak, draw),
            streak=self.streak,
            total=self.total,
            uptime_s=uptime,
            crash_looping=self.streak >= self.policy.loud_after,
        )
