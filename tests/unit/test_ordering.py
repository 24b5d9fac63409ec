"""RoomSequencer: gap-free, ordered, duplicate-free release of a room's messages."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chat_gateway.rooms.ordering import RoomSequencer


def test_holds_everything_until_started() -> None:
    """Before the head is known nothing is released; start releases what follows the head."""
    seq: RoomSequencer[str] = RoomSequencer()
    assert seq.offer(3, "c") == []
    assert seq.offer(2, "b") == []
    assert seq.start(1) == ["b", "c"]
    assert seq.next_seq == 4


def test_releases_in_order_and_reports_the_gap() -> None:
    """An early message waits for the missing one; missing() names the hole."""
    seq: RoomSequencer[str] = RoomSequencer()
    seq.start(0)
    assert seq.offer(1, "a") == ["a"]
    assert seq.offer(3, "c") == []
    assert seq.missing() == (1, 3)
    assert seq.offer(2, "b") == ["b", "c"]
    assert seq.missing() is None


def test_drops_duplicates_and_old_messages() -> None:
    """A seq already released or already held is not released twice."""
    seq: RoomSequencer[str] = RoomSequencer()
    seq.start(5)
    assert seq.offer(5, "old") == []
    assert seq.offer(7, "g") == []
    assert seq.offer(7, "g-again") == []
    assert seq.offer(6, "f") == ["f", "g"]


def test_start_with_an_older_head_changes_nothing() -> None:
    """A second join with an older head does not rewind the room."""
    seq: RoomSequencer[str] = RoomSequencer()
    seq.start(10)
    assert seq.start(4) == []
    assert seq.offer(11, "k") == ["k"]


def test_overflow_is_reported() -> None:
    """Holding more than the limit raises instead of growing without bound."""
    seq: RoomSequencer[int] = RoomSequencer(max_buffered=2)
    seq.start(0)
    seq.offer(5, 5)
    seq.offer(6, 6)
    with pytest.raises(OverflowError):
        seq.offer(7, 7)


@given(st.permutations(list(range(1, 40))), st.lists(st.integers(1, 39), max_size=20))
def test_any_arrival_order_releases_each_seq_once_in_order(
    order: list[int], dups: list[int]
) -> None:
    """Whatever the arrival order and duplicates, the output is exactly 1..n ascending."""
    seq: RoomSequencer[int] = RoomSequencer()
    seq.start(0)
    out: list[int] = []
    for s in order + dups:
        out += seq.offer(s, s)
    assert out == list(range(1, 40))
