"""The one backoff schedule of every retry-until-it-works loop."""

from __future__ import annotations

from chat_common.backoff import Backoff


def test_ceilings_grow_by_the_factor_up_to_the_cap_and_waits_are_jittered_below() -> None:
    backoff = Backoff(0.1, cap_s=1.0, draw=lambda: 0.5)
    assert [round(backoff.next(), 3) for _ in range(6)] == [0.05, 0.1, 0.2, 0.4, 0.5, 0.5]


def test_without_jitter_the_wait_is_the_ceiling_and_a_floor_lifts_a_zero_start() -> None:
    backoff = Backoff(0.0, cap_s=2.0, floor_s=0.05, jitter=False)
    assert [backoff.next() for _ in range(8)] == [0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0]


def test_reset_starts_again_from_the_first_wait() -> None:
    backoff = Backoff(0.05, cap_s=5.0, factor=4, jitter=False)
    assert [backoff.next() for _ in range(3)] == [0.05, 0.2, 0.8]
    backoff.reset()
    assert backoff.next() == 0.05
