"""Who is typing in one room, as one gateway's members see it, and when to tell them (pure:
no I/O, no clock of its own; times are passed in).

A :class:`Typists` table holds the room's typists in the order they started (a renewal keeps
a typist's place), each until an expiry: a typist not renewed within ``ttl_s`` is dropped
(:meth:`Typists.expire`), so a typist whose network or gateway vanished is cleared on the
receiving side with no message from anyone. A typist also goes when they stop, and when the
room's message stream brings a message of theirs (:meth:`Typists.stop` either way).

The table also paces the room's ``typing`` frames, as presence diffs are paced: a change
after at least an interval without a frame goes out at once (the leading edge, so a
typist is shown within a bus hop), later changes wait for the interval to pass and go out
together (:meth:`Typists.due`, :meth:`Typists.take`). Renewals change nothing and send
nothing. The interval is ``interval_s``, or longer in a room so large at this gateway that
its frames would pass ``frames_per_s`` (:meth:`Typists.spent`): a room of 10,000 members
gets its frames every 10 s at 1,000 frames/s, which bounds what typing costs a gateway per
room whatever its size and churn.

What a member is shown (:meth:`Typists.view`) is bounded whatever the room's size: the
first ``max_names`` typists' emails, as long as they fit ``names_bytes`` of JSON, and the
count of all of them; a member never sees themselves. The table remembers what the last
frame showed (:attr:`Typists.last`, and :meth:`Typists.take` returns the one before), so
a member whose view did not change (a typist who just started, say) is not sent it again.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

__all__ = ["NAMES_BYTES", "Shown", "TypingView", "Typists"]

NAMES_BYTES = 768
"""The most JSON bytes the names of one ``typing`` frame take, so that the frame stays under
1 KiB with the longest room id (64) and the framing of either protocol."""
_EXPIRY_SLACK_S = 0.05
"""Expiries this close together are taken in one pass (fewer wake-ups in a busy room)."""

_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class TypingView:
    """What one member is shown: up to N emails (oldest typist first) and how many type."""

    users: list[str]
    count: int

    def payload(self, room_id: str) -> dict[str, object]:
        """The ``typing`` event's payload."""
        return {"roomId": room_id, "users": self.users, "count": self.count}


@dataclass(slots=True)
class _Typist:
    email: str
    expires: float
    size: int
    """The email's JSON length in bytes, with its separator."""


Shown = dict[str, _Typist]
"""The typists (by user id, in order) as one frame showed them."""


class Typists:
    """One room's typists at one gateway; see the module docstring."""

    __slots__ = (
        "_dirty", "_earliest", "_frames_per_s", "_interval", "_max_names", "_names_bytes",
        "_pace", "_sent", "_shown", "_ttl", "_typists",
    )  # fmt: skip

    def __init__(
        self,
        *,
        ttl_s: float,
        interval_s: float,
        max_names: int,
        frames_per_s: float = float("inf"),
        names_bytes: int = NAMES_BYTES,
    ) -> None:
        self._ttl = ttl_s
        self._interval = self._pace = interval_s
        self._frames_per_s = frames_per_s
        self._max_names = max_names
        self._names_bytes = names_bytes
        self._typists: Shown = {}  # by user id, in the order they started
        self._shown: Shown = {}
        """The typists as the last frame showed them."""
        self._dirty = False
        self._sent = float("-inf")
        """When the last frame went out."""
        self._earliest = float("inf")
        """No typist expires before this (renewals only move expiries later, so it stays a
        lower bound until the next scan): most changes need no look at every typist."""

    def __len__(self) -> int:
        return len(self._typists)

    def __contains__(self, user_id: object) -> bool:
        return user_id in self._typists

    @property
    def pending(self) -> bool:
        """Whether a change waits to be sent."""
        return self._dirty

    # -- changes ------------------------------------------------------------------------------

    def start(self, user_id: str, email: str, now: float) -> bool:
        """``user_id`` types (started, or renewed): whether that changed what members see."""
        typist = self._typists.get(user_id)
        if typist is not None and typist.email == email:
            typist.expires = now + self._ttl
            return False
        size = len(_encode(email)) + 1
        self._typists[user_id] = _Typist(email, now + self._ttl, size)
        self._earliest = min(self._earliest, now + self._ttl)
        self._dirty = True
        return True

    def stop(self, user_id: str) -> bool:
        """``user_id`` stopped, left, or sent a message: whether they were shown typing."""
        if self._typists.pop(user_id, None) is None:
            return False
        self._dirty = True
        return True

    def expire(self, now: float) -> bool:
        """Drop the typists not renewed in time: whether any was."""
        if now + _EXPIRY_SLACK_S < self._earliest:
            return False
        gone = [uid for uid, t in self._typists.items() if t.expires <= now + _EXPIRY_SLACK_S]
        for user_id in gone:
            del self._typists[user_id]
        if gone:
            self._dirty = True
        self._earliest = min((t.expires for t in self._typists.values()), default=float("inf"))
        return bool(gone)

    # -- pacing -------------------------------------------------------------------------------

    def take(self, now: float) -> Shown | None:
        """If a frame goes out now (a change waits and the interval has passed): the change
        is taken, and what the previous frame showed is returned (for :meth:`view`'s
        ``shown``: a member whose view is the same need not be sent it again)."""
        if not self._dirty or now < self._sent + self._pace:
            return None
        self._dirty = False
        self._sent = now
        before, self._shown = self._shown, dict(self._typists)
        return before

    def due(self, now: float) -> float | None:
        """When to look at the room again (:meth:`expire`, then :meth:`take`): the next
        frame's time if a change waits, or the first expiry; ``None`` when the table is empty,
        nothing waits and the interval has passed (the room's table may be dropped)."""
        times: list[float] = []
        if self._dirty:
            times.append(max(now, self._sent + self._pace))
        if self._typists:
            times.append(self._earliest)
        elif self._sent + self._pace > now:
            times.append(self._sent + self._pace)  # kept until then: the pace holds
        return min(times) if times else None

    def spent(self, frames: int) -> None:
        """The frame just taken was written to ``frames`` members: the next waits at least
        the interval, longer if ``frames`` at that pace would pass ``frames_per_s``."""
        self._pace = max(self._interval, frames / self._frames_per_s)

    # -- what members see ---------------------------------------------------------------------

    def involves(self, user_id: str | None, shown: Shown) -> bool:
        """Whether ``user_id`` types now or in ``shown``: then their view is their own."""
        return user_id in self._typists or user_id in shown

    def view(self, *, without: str | None = None, shown: Shown | None = None) -> TypingView:
        """What a member is shown now, or in ``shown`` (a frame's typists; the last frame's
        with ``shown=self.last``); ``without``: the member's own user id, never shown."""
        names: list[str] = []
        budget = self._names_bytes
        count = 0
        for user_id, typist in (self._typists if shown is None else shown).items():
            if user_id == without:
                continue
            count += 1
            if len(names) < self._max_names and typist.size <= budget:
                names.append(typist.email)
                budget -= typist.size
        return TypingView(names, count)

    @property
    def last(self) -> Shown:
        """The typists as the last frame showed them (what a joining member is greeted with)."""
        return self._shown
