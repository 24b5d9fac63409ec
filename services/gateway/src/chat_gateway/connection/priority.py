"""Which of a connection's outgoing frames go out while its queue is long (pure).

Every frame a connection is sent belongs to a :class:`FrameClass`. The longer the queue of
bytes the peer has not taken yet (the carrier's backlog plus this loop turn's outbox), the
fewer classes still go out; the lowest go first:

======================  ==============================  ======================================
class                   written while queued is below   past it
======================  ==============================  ======================================
``ACK``                 always                          (the hard cap cuts the connection)
``ROOM``                the soft limit                  withheld: replayed from history later
``PRESENCE``            half the soft limit             coalesced: the latest per room is kept
``TYPING``              a quarter of the soft limit     dropped (it is stale in a second)
======================  ==============================  ======================================

``ACK`` covers acks and errors, every reply, heartbeats, and the user's own state events
(``read_state``, ``membership``, ``inbox_update``: states with no per-room seq to replay
them by). ``ROOM`` covers a room's seq'd events (messages, and any event history gives the
room's next seq), which :mod:`chat_gateway.connection.catchup` replays in order once the
connection has drained. Nothing here knows a socket; :class:`Priorities` only answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum

__all__ = ["Admission", "FrameClass", "Priorities"]


class FrameClass(IntEnum):
    """A frame's priority: the lower the value, the later it is given up."""

    ACK = 1
    ROOM = 2
    PRESENCE = 3
    TYPING = 4


class Admission(Enum):
    """What becomes of one frame."""

    WRITE = "write"
    WITHHOLD = "withhold"
    """Not written; it has a seq, so it is replayed from history once the queue drains."""
    COALESCE = "coalesce"
    """Not written now; the latest of its room is kept and written once the queue drains."""
    DROP = "drop"
    """Not written, ever."""


@dataclass(frozen=True, slots=True)
class Priorities:
    """The thresholds of one gateway: ``soft`` bytes queued (see the module docstring)."""

    soft: int

    def __post_init__(self) -> None:
        if self.soft < 4:
            raise ValueError("the soft limit must be a few bytes at least")

    @property
    def low(self) -> int:
        """The low-water mark: at or below it the queue counts as drained (catch-up goes
        on, held presence goes out); typing is dropped above it."""
        return self.soft // 4

    def admit(self, kind: FrameClass, queued: int) -> Admission:
        """What to do with a frame of ``kind`` when ``queued`` bytes wait for the peer."""
        if kind is FrameClass.ACK:
            return Admission.WRITE
        if kind is FrameClass.ROOM:
            return Admission.WRITE if queued < self.soft else Admission.WITHHOLD
        if kind is FrameClass.PRESENCE:
            return Admission.WRITE if queued < self.soft // 2 else Admission.COALESCE
        return Admission.WRITE if queued < self.low else Admission.DROP
