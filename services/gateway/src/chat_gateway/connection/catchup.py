"""One connection that fell behind, until it is live again (pure, no I/O, no clock).

A reader whose queue passes the soft limit (:mod:`chat_gateway.connection.priority`) is no
longer written its rooms' live seq'd events. Instead, per room, the :class:`CatchUp`
remembers its *delivered position* (the last seq written to it) and, once the queue has
drained to the low-water mark, asks for the room's next events from history one page at a
time, until the page reaches the room's head; the room is then live again::

    LIVE ──(a room event withheld)──▶ LAGGING ──(drained, interval passed)──▶ CATCHING_UP
      ▲                                  ▲                                        │
      └────(no room behind)──────────────┴───────────(the page is written)────────┘

**Exactly once, in order.** While a page of a room is in flight, that room's live events
are not dropped but kept (the *tail*). History publishes a room's events after COMMIT, so
every event the gateway released before the page was asked for is in the page or before
it; the tail holds every event released since. When the page reaches the room's head, the
page and then the tail's events above it (contiguous, else the switch waits for the next
page) are written, and the room's live events flow again from there. Events the room's
sequencer releases later at or below that position are duplicates the writer skips (the
delivered position says so).

**Bounded.** One page in flight per connection, at most one request per ``interval_s``
(sooner only when the peer took every byte of the last page: it reads fast), a
page sized to fill the queue to ``target`` bytes (from the events' average size, at most
``page_max``), a tail of at most ``tail_max`` events. A connection behind whose queue does
not shrink for ``deadline_s`` never drains: it is to be cut (4008).

Presence held while the queue was long (the latest event per room) is handed back once it
has drained, with the next page request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, Protocol, TypeVar

__all__ = ["CatchUp", "CatchUpLimits", "PageRequest", "Phase", "Step"]


class _Seqd(Protocol):
    @property
    def seq(self) -> int | None: ...


E = TypeVar("E", bound=_Seqd)


class Phase(Enum):
    LIVE = "live"
    """Nothing behind, nothing held."""
    LAGGING = "lagging"
    """Rooms behind (or presence held): waiting for the queue to drain and the interval."""
    CATCHING_UP = "catching_up"
    """A page is in flight."""


@dataclass(frozen=True, slots=True)
class CatchUpLimits:
    low: int
    """Bytes queued at or below which the connection counts as drained."""
    target: int
    """Bytes a page should fill the queue up to."""
    page_max: int
    """Events per page at most."""
    interval_s: float
    """Least time between two page requests."""
    deadline_s: float
    """Longest time behind with a queue that does not shrink, before the cut."""
    tail_max: int = 10_000
    """Live events kept while a page is in flight (past it the switch waits a page)."""


@dataclass(frozen=True, slots=True)
class PageRequest:
    """Ask history for ``room_id``'s events after ``after_seq``, ``limit`` at most."""

    room_id: str
    after_seq: int
    limit: int
    token: int
    """Which request this is (an answer to a forgotten one is ignored)."""


@dataclass(slots=True)
class Step(Generic[E]):
    """What to do at one look: cut, write held presence, ask for a page."""

    cut: bool = False
    presence: list[E] = field(default_factory=list)
    page: PageRequest | None = None


_NEVER = float("-inf")


class CatchUp(Generic[E]):
    """The catch-up state of one connection (see the module docstring)."""

    __slots__ = ("_avg", "_in_flight", "_last_page", "_last_queued", "_limits", "_presence",
                 "_progress_at", "_tail", "_tokens", "_written", "behind", "phase")  # fmt: skip

    def __init__(self, limits: CatchUpLimits, *, now: float) -> None:
        self._limits = limits
        self.phase = Phase.LIVE
        self.behind: dict[str, int] = {}
        """room -> its delivered position, for each room whose live events are withheld."""
        self._presence: dict[str, E] = {}
        self._in_flight: PageRequest | None = None
        self._tail: list[E] | None = None
        self._last_page = _NEVER
        self._progress_at = now
        self._last_queued: int | None = None
        self._avg = 0.0
        self._tokens = 0
        self._written = False
        """The last page was written: once the peer took all of it, the next may come at once."""

    @property
    def live(self) -> bool:
        """Whether nothing is behind, held or in flight (the connection needs no watching)."""
        return not self.behind and not self._presence and self._in_flight is None

    @property
    def holds_presence(self) -> dict[str, E]:
        return self._presence

    # -- what the writer could not write ------------------------------------------------------

    def withhold(self, room_id: str, event: E, *, position: int, size: int) -> None:
        """A live event of ``room_id`` was not written; the connection has every event of
        the room up to ``position``."""
        self.behind.setdefault(room_id, position)
        if self.phase is Phase.LIVE:
            self.phase = Phase.LAGGING
        request, tail = self._in_flight, self._tail
        if request is not None and request.room_id == room_id and tail is not None:
            tail.append(event)
            if len(tail) > self._limits.tail_max:
                self._tail = None
        self._avg = size if not self._avg else 0.9 * self._avg + 0.1 * size

    def hold_presence(self, room_id: str, event: E) -> None:
        """Presence not written: it replaces what was held for the room."""
        self._presence[room_id] = event
        if self.phase is Phase.LIVE:
            self.phase = Phase.LAGGING

    def forget(self, room_id: str) -> None:
        """The connection left ``room_id``."""
        self.behind.pop(room_id, None)
        self._presence.pop(room_id, None)
        if self._in_flight is not None and self._in_flight.room_id == room_id:
            self._end_flight()

    # -- a look at the queue --------------------------------------------------------------------

    def step(self, queued: int, now: float) -> Step[E]:
        """Look at the connection, ``queued`` bytes waiting for it: what to do now."""
        limits = self._limits
        if self._last_queued is None or queued < self._last_queued or queued <= limits.low:
            self._progress_at = now
        self._last_queued = queued
        if queued > limits.low:
            stuck = now - self._progress_at >= limits.deadline_s
            return Step(cut=stuck and not self.live)
        step: Step[E] = Step(presence=list(self._presence.values()))
        self._presence.clear()
        # A peer that took the whole last page reads fast: its next page needs no wait (else
        # a reader that lagged once in a busy room could never catch up at one page a second).
        due = now - self._last_page >= limits.interval_s or (self._written and queued == 0)
        if self._in_flight is None and self.behind and due:
            room_id = next(iter(self.behind))
            after = self.behind.pop(room_id)
            self.behind[room_id] = after  # the next page is the next room's (round robin)
            room = max(0, limits.target - queued)
            limit = max(1, min(limits.page_max, int(room // self._avg) if self._avg else 1))
            self._tokens += 1
            self._written = False
            step.page = self._in_flight = PageRequest(room_id, after, limit, self._tokens)
            self._tail = []
            self._last_page = now
            self.phase = Phase.CATCHING_UP
        elif self.live:
            self.phase = Phase.LIVE
        return step

    # -- the page ---------------------------------------------------------------------------

    def page_done(self, request: PageRequest, events: list[E], *, head: int, now: float) -> list[E]:
        """The page ``request`` asked for: ``events`` in seq order after its position, and
        the room's head as of the page. Returns what to write now, in order: the page and,
        when it reached the head, the live events kept since the request (the room is then
        live again)."""
        if request is not self._in_flight:
            return []
        tail = self._tail
        self._end_flight()
        self._progress_at = now
        position = self.behind.get(request.room_id)
        if position is None:
            return []
        out = [e for e in events if e.seq is not None and e.seq > position]
        if out:
            position = out[-1].seq or position
            self._written = True
        live = position >= head and tail is not None
        if live and tail is not None:
            for event in tail:
                seq = event.seq
                if seq is None or seq <= position:
                    continue
                if seq != position + 1:
                    live = False  # a hole: the next page fills it
                    break
                out.append(event)
                position = seq
        if live:
            del self.behind[request.room_id]
        else:
            self.behind[request.room_id] = position
        self.phase = Phase.LAGGING if not self.live else Phase.LIVE
        return out

    def page_failed(self, request: PageRequest) -> None:
        """The page could not be read: the next look may ask again after the interval."""
        if request is self._in_flight:
            self._end_flight()
            self.phase = Phase.LAGGING if not self.live else Phase.LIVE

    def _end_flight(self) -> None:
        self._in_flight = None
        self._tail = None
        if self.phase is Phase.CATCHING_UP:
            self.phase = Phase.LAGGING
