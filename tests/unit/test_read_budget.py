"""The read budget: every frame costs a token; over budget, pause; sustained abuse, cut."""

from __future__ import annotations

import pytest

from chat_gateway.edge.budget import ReadBudget


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _budget(clock: Clock) -> ReadBudget:
    return ReadBudget(rate=10, burst=20, cut_after_s=5, clock=clock)


def test_within_the_burst_reading_goes_on() -> None:
    """A burst's worth of frames at once costs nothing but tokens."""
    budget = _budget(Clock())
    verdict = budget.charge(20)
    assert (verdict.pause_s, verdict.cut) == (0.0, False)


def test_over_budget_the_pause_pays_the_debt_back() -> None:
    """Frames beyond the bucket pause reading until the debt is refilled at ``rate``."""
    clock = Clock()
    budget = _budget(clock)
    verdict = budget.charge(25)
    assert verdict.pause_s == pytest.approx(0.5) and not verdict.cut
    clock.now += 0.5
    assert budget.charge(0).pause_s == 0.0  # paid back: reading again


def test_a_client_at_its_rate_is_never_paused() -> None:
    """Ten frames a second against a rate of ten, for a minute: no pause, no cut."""
    clock = Clock()
    budget = _budget(clock)
    for _ in range(600):
        clock.now += 0.1
        assert budget.charge(1).pause_s == 0.0


def test_sustained_abuse_is_cut() -> None:
    """A connection that comes back over budget every time it is read is cut after
    ``cut_after_s`` in a row."""
    clock = Clock()
    budget = _budget(clock)
    verdicts = []
    for _ in range(20):
        verdict = budget.charge(40)
        verdicts.append(verdict)
        if verdict.cut:
            break
        clock.now += verdict.pause_s
    assert verdicts[-1].cut
    assert clock.now - 100.0 >= 5


def test_an_episode_ends_when_the_bucket_is_full_again() -> None:
    """A burst, a pause, then calm long enough to refill: the next burst starts afresh."""
    clock = Clock()
    budget = _budget(clock)
    for _ in range(3):
        assert budget.charge(30).pause_s > 0
        clock.now += 4.0  # full again (20 tokens at 10/s from a debt of 10 takes 3 s)
    assert not budget.charge(30).cut


def test_nonsense_settings_are_refused() -> None:
    """A zero rate or cut time, or a burst below one frame, cannot be configured."""
    for kwargs in ({"rate": 0, "burst": 1, "cut_after_s": 1}, {"rate": 1, "burst": 0.5,
                   "cut_after_s": 1}, {"rate": 1, "burst": 1, "cut_after_s": 0}):  # fmt: skip
        with pytest.raises(ValueError):
            ReadBudget(**kwargs)  # type: ignore[arg-type]
