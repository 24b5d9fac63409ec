"""Presence drift (pure): repaired only when two observations in a row saw it."""

from __future__ import annotations

from chat_session.drift import DriftWatch, Membership

A: Membership = ("r1", "a@example.com", "s1")
B: Membership = ("r1", "b@example.com", "s2")
C: Membership = ("r2", "c@example.com", "s3")


def test_agreeing_sides_need_no_repair() -> None:
    watch = DriftWatch()
    for _ in range(3):
        assert not watch.observe({A, B}, {A: 0, B: 4})


def test_a_stale_membership_leaves_on_the_second_observation() -> None:
    watch = DriftWatch()
    assert not watch.observe({A, B}, {A: 0})
    repairs = watch.observe({A, B}, {A: 0})
    assert (repairs.leave, repairs.join) == ([B], {})


def test_a_missing_membership_joins_with_its_position() -> None:
    watch = DriftWatch()
    assert not watch.observe({A}, {A: 0, C: 9})
    repairs = watch.observe({A}, {A: 0, C: 9})
    assert (repairs.leave, repairs.join) == ([], {C: 9})


def test_drift_seen_once_is_a_write_in_flight_and_never_repaired() -> None:
    watch = DriftWatch()
    assert not watch.observe({A, B}, {A: 0})  # B's session side not written yet
    assert not watch.observe({A, B}, {A: 0, B: 0})  # now it is
    assert not watch.observe({A}, {A: 0, B: 0})  # B's room side: a leave half done
    assert not watch.observe({A}, {A: 0})


def test_drift_that_persists_after_a_repair_is_repaired_again() -> None:
    watch = DriftWatch()
    watch.observe({A, B}, {A: 0})
    assert watch.observe({A, B}, {A: 0}).leave == [B]
    assert watch.observe({A, B}, {A: 0}).leave == [B]  # the repair did not take: again
