"""The restart schedule of the local stack: backoff, jitter, streak reset, crash looping."""

from __future__ import annotations

import pytest

from chat_devstack.restart import RestartPolicy, RestartTracker

NO_JITTER = 0.0


class FakeClock:
    """Seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def test_delays_double_from_half_a_second_up_to_the_cap() -> None:
    """Crashes in a row wait 0.5, 1, 2, 4 ... seconds, never more than 30."""
    policy = RestartPolicy()
    delays = [policy.nominal_delay(streak) for streak in range(1, 10)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_a_very_long_streak_stays_at_the_cap() -> None:
    """Thousands of crashes in a row do not overflow the delay."""
    assert RestartPolicy().nominal_delay(5000) == 30.0


@pytest.mark.parametrize(("draw", "expected"), [(0.0, 4.0), (0.5, 3.6), (0.999, 3.2008)])
def test_jitter_only_shortens_the_delay(draw: float, expected: float) -> None:
    """A draw in [0, 1) cuts the delay by up to 20% of itself."""
    assert RestartPolicy().delay(4, draw) == pytest.approx(expected)


def test_a_crash_soon_after_the_last_continues_the_streak() -> None:
    """Each crash before the process stayed up 60 s waits twice as long as the one before."""
    clock, tracker = FakeClock(), RestartTracker(RestartPolicy())
    tracker.ready(clock.now)
    seen = []
    for _ in range(4):
        restart = tracker.exited(clock.advance(10.0), draw=NO_JITTER)
        seen.append((restart.streak, restart.total, restart.delay_s))
        tracker.ready(clock.advance(restart.delay_s + 1.0))
    assert seen == [(1, 1, 0.5), (2, 2, 1.0), (3, 3, 2.0), (4, 4, 4.0)]


def test_staying_up_long_enough_starts_a_new_streak() -> None:
    """After 60 s up, the next crash waits the initial delay again; the total keeps counting."""
    clock, tracker = FakeClock(), RestartTracker(RestartPolicy())
    tracker.ready(clock.now)
    for _ in range(3):
        tracker.exited(clock.advance(1.0), draw=NO_JITTER)
        tracker.ready(clock.advance(1.0))
    restart = tracker.exited(clock.advance(60.0), draw=NO_JITTER)
    assert (restart.streak, restart.total, restart.delay_s) == (1, 4, 0.5)
    assert restart.uptime_s == 60.0


def test_a_failed_restart_counts_as_a_crash_with_no_uptime() -> None:
    """A process that never became ready has 0 s up, however long its attempt took."""
    clock, tracker = FakeClock(), RestartTracker(RestartPolicy())
    tracker.ready(clock.now)
    first = tracker.exited(clock.advance(5.0), draw=NO_JITTER)
    second = tracker.exited(clock.advance(120.0), draw=NO_JITTER)  # never ready in between
    assert (first.uptime_s, first.streak) == (5.0, 1)
    assert (second.uptime_s, second.streak, second.delay_s) == (0.0, 2, 1.0)


def test_five_crashes_in_a_row_is_a_crash_loop_that_is_never_given_up() -> None:
    """From the 5th crash in a row the part is crash looping, retried at the cap forever."""
    clock, tracker = FakeClock(), RestartTracker(RestartPolicy())
    restarts = [tracker.exited(clock.advance(0.1), draw=NO_JITTER) for _ in range(100)]
    assert [r.crash_looping for r in restarts[:6]] == [False] * 4 + [True] * 2
    assert all(r.crash_looping and r.delay_s == 30.0 for r in restarts[6:])
    assert restarts[-1].streak == 100


def test_the_policy_is_configurable() -> None:
    """Another initial delay, factor, cap and threshold give their own schedule."""
    policy = RestartPolicy(initial_s=0.1, factor=3.0, cap_s=1.0, stable_s=5.0, loud_after=2)
    clock, tracker = FakeClock(), RestartTracker(policy)
    restarts = [tracker.exited(clock.advance(0.1), draw=NO_JITTER) for _ in range(4)]
    assert [r.delay_s for r in restarts] == pytest.approx([0.1, 0.3, 0.9, 1.0])
    assert [r.crash_looping for r in restarts] == [False, True, True, True]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_s": 0.0},
        {"initial_s": 40.0},
        {"factor": 0.5},
        {"jitter": 1.0},
        {"stable_s": 0.0},
        {"loud_after": 0},
    ],
)
def test_nonsense_policies_are_refused(kwargs: dict[str, float]) -> None:
    """A policy that could restart in a busy loop or never is a ValueError."""
    with pytest.raises(ValueError, match=r"need|must"):
        RestartPolicy(**kwargs)
