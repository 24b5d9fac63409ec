"""A large room's presence changes of one interval, coalesced into one diff (pure).

A room past the session service's ``SESSION_PRESENCE_LIST_MAX`` users announces each join
and leave without its member list; a gateway collects them per room and sends its members one
``presence_diff`` per interval instead of one event per change, as Phoenix Presence sends
diffs. The diff is *net*: a user who joined and left within the interval is in neither list,
and one who left and came back is in neither (they were there before and are there after).
At most ``max_names`` names are kept per list; past that the diff says ``truncated`` and a
client that keeps a member list pages it again with ``get_members``.
"""

from __future__ import annotations

__all__ = ["PresenceBatch"]


class PresenceBatch:
    """The net joins and leaves of a room since the last :meth:`take`."""

    __slots__ = ("_count", "_joins", "_leaves", "_max", "_pending", "_truncated")

    def __init__(self, *, max_names: int) -> None:
        self._max = max_names
        self._joins: dict[str, None] = {}  # insertion-ordered sets
        self._leaves: dict[str, None] = {}
        self._count = 0
        self._truncated = False
        self._pending = False

    def __bool__(self) -> bool:
        """Whether there is anything to send."""
        return self._pending

    def add(self, event: str, email: str, count: int) -> None:
        """One ``user_joined`` or ``user_left`` (``count``: the room's users after it)."""
        self._pending = True
        self._count = count
        arrived, departed = (
            (self._joins, self._leaves) if event == "user_joined" else (self._leaves, self._joins)
        )
        if email in departed:
            del departed[email]  # back to how it was before the interval
        elif email not in arrived:
            if len(arrived) < self._max:
                arrived[email] = None
            else:
                self._truncated = True

    def take(self, room_id: str) -> dict[str, object]:
        """The diff to send (``presence_diff``'s payload), and start a new interval."""
        diff: dict[str, object] = {
            "roomId": room_id,
            "joins": list(self._joins),
            "leaves": list(self._leaves),
            "count": self._count,
        }
        if self._truncated:
            diff["truncated"] = True
        self._joins, self._leaves = {}, {}
        self._truncated = self._pending = False
        return diff
