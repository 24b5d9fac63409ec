"""Pure planning of one group-commit batch: de-duplication and sequence assignment.

A batch is a list of appends collected for a few milliseconds. Appends sharing
``(room_id, client_msg_id)`` are one message. Messages already stored are answered from
the database; the rest get consecutive sequence numbers per room, in arrival order, ending
at the room's new ``last_seq``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Key", "NewMessagePlan", "assign_seqs", "count_per_room", "unique_keys"]

Key = tuple[str, str]
"""(room_id, client_msg_id): the identity of a message."""


@dataclass(frozen=True, slots=True)
class NewMessagePlan:
    key: Key
    seq: int


def unique_keys(keys: Iterable[Key]) -> list[Key]:
    """The distinct keys, in order of first appearance."""
    return list(dict.fromkeys(keys))


def count_per_room(new_keys: Sequence[Key]) -> dict[str, int]:
    """How many new messages each room receives, rooms sorted (a stable lock order)."""
    counts: dict[str, int] = {}
    for room_id, _ in new_keys:
        counts[room_id] = counts.get(room_id, 0) + 1
    return dict(sorted(counts.items()))


def assign_seqs(new_keys: Sequence[Key], new_last_seq: Mapping[str, int]) -> list[NewMessagePlan]:
    """Give each new key its seq: room R's k new keys get ``last-k+1 .. last`` in order."""
    counts = count_per_room(new_keys)
    next_seq = {room: new_last_seq[room] - count + 1 for room, count in counts.items()}
    plans = []
    for key in new_keys:
        room = key[0]
        plans.append(NewMessagePlan(key, next_seq[room]))
        next_seq[room] += 1
    return plans
