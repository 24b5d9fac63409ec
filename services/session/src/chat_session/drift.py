"""Presence drift: where a room's side of a membership and its session's side disagree.

A join or leave writes two places: the room's keys (who is in it, which of the user's
sessions) and the session's list of rooms. On Redis Cluster these live in different slots,
often on different primaries, so one of the two writes can be lost on its own: a primary
on the minority side of a partition acknowledges writes until its node timeout, and its
replica, promoted by the majority, never saw them. What is left is *drift*: a user listed
in a room their session has left (*stale*: a member who is gone), or a session holding a
room whose list lacks it (*missing*: a member nobody sees).

The session's side is the truth (it is what the gateway re-registers, resumes and ends, and
a connection's numbered joins and leaves keep it at the connection's last word: see
:mod:`chat_session.store`), so the repair moves the room's side to it: a stale membership leaves the room, a missing one
joins it (each announced to the room as a real leave or join would be).

A join or leave in flight is drift for the moment between its two writes, so drift is
repaired only once two observations in a row, a sweep interval apart, both saw it.
:class:`DriftWatch` is that decision; it does no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DriftWatch", "Membership", "Repairs"]

Membership = tuple[str, str, str]
"""(room id, email, session id)."""


@dataclass(frozen=True, slots=True)
class Repairs:
    leave: list[Membership] = field(default_factory=list)
    """Room-side memberships no session holds: take them out of their rooms."""
    join: dict[Membership, int] = field(default_factory=dict)
    """Memberships a session holds that the room lacks, with their join positions."""

    def __bool__(self) -> bool:
        return bool(self.leave or self.join)


class DriftWatch:
    """Drift seen twice in a row: what to repair."""

    def __init__(self) -> None:
        self._stale: set[Membership] = set()
        self._missing: set[Membership] = set()

    def observe(self, room_side: set[Membership], session_side: dict[Membership, int]) -> Repairs:
        """One observation of both sides (room side: memberships; session side: the same
        with each join position). Returns the drift the previous observation saw too."""
        stale = room_side - session_side.keys()
        missing = session_side.keys() - room_side
        repairs = Repairs(
            leave=sorted(stale & self._stale),
            join={m: session_side[m] for m in sorted(missing & self._missing)},
        )
        self._stale, self._missing = stale, missing
        return repairs
