"""Group-commit planning: de-duplication and per-room seq assignment."""

from __future__ import annotations

from chat_history.batching import assign_seqs, count_per_room, unique_keys


def test_unique_keys_keep_first_appearance_order() -> None:
    """Duplicates in a batch collapse to one key at the first position."""
    keys = [("r1", "a"), ("r2", "x"), ("r1", "a"), ("r1", "b")]
    assert unique_keys(keys) == [("r1", "a"), ("r2", "x"), ("r1", "b")]


def test_counts_are_sorted_by_room() -> None:
    """Rooms come sorted so every writer locks them in the same order."""
    assert list(count_per_room([("b", "1"), ("a", "2"), ("b", "3")]).items()) == [
        ("a", 1),
        ("b", 2),
    ]


def test_seqs_are_consecutive_per_room_ending_at_the_new_last() -> None:
    """Each room's new keys get last-k+1..last in arrival order."""
    new = [("r1", "a"), ("r2", "x"), ("r1", "b"), ("r1", "c")]
    plans = assign_seqs(new, {"r1": 12, "r2": 1})
    assert [(p.key, p.seq) for p in plans] == [
        (("r1", "a"), 10),
        (("r2", "x"), 1),
        (("r1", "b"), 11),
        (("r1", "c"), 12),
    ]
