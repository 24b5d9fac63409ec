"""The catch-up state machine of one connection: live → lagging → catching up → live,
exactly once and in order, bounded in pages, memory and time."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from chat_gateway.connection.catchup import CatchUp, CatchUpLimits, PageRequest, Phase

LIMITS = CatchUpLimits(
    low=100, target=1000, page_max=50, interval_s=1.0, deadline_s=10.0, tail_max=20
)


@dataclass(frozen=True)
class Ev:
    seq: int | None
    room: str = "r"


def _lagging(position: int = 5, *, now: float = 0.0) -> CatchUp[Ev]:
    lag: CatchUp[Ev] = CatchUp(LIMITS, now=now)
    lag.withhold("r", Ev(position + 1), position=position, size=100)
    return lag


def _page(lag: CatchUp[Ev], queued: int = 0, now: float = 1.0) -> PageRequest:
    request = lag.step(queued, now).page
    assert request is not None
    return request


def test_a_withheld_event_makes_the_connection_lag_at_its_position() -> None:
    """The first event not written notes the room's delivered position; later ones of the
    room change nothing (the position is what was written)."""
    lag = _lagging(5)
    lag.withhold("r", Ev(7), position=5, size=100)
    assert lag.phase is Phase.LAGGING and lag.behind == {"r": 5} and not lag.live


def test_no_page_until_the_queue_has_drained_to_the_low_water_mark() -> None:
    """Above the low-water mark nothing is asked; at it, one page after the position."""
    lag = _lagging(5)
    assert lag.step(101, 1.0).page is None
    request = _page(lag, queued=100, now=1.1)
    assert (request.room_id, request.after_seq) == ("r", 5)
    assert lag.phase is Phase.CATCHING_UP


def test_a_page_is_sized_to_fill_the_queue_to_the_target() -> None:
    """With events of about 100 bytes and 100 queued, a page asks for (1000 - 100) / 100."""
    assert _page(_lagging(5), queued=100).limit == 9
    lag = _lagging(5)
    for _ in range(50):
        lag.withhold("r", Ev(9), position=5, size=5)
    assert _page(lag, queued=0).limit == LIMITS.page_max


def test_one_page_in_flight_and_one_per_interval() -> None:
    """While a page is in flight no other is asked; after it, not before the interval."""
    lag = _lagging(5)
    lag.withhold("s", Ev(3, "s"), position=2, size=100)
    first = _page(lag, now=1.0)
    assert lag.step(0, 1.5).page is None  # in flight
    lag.page_done(first, [Ev(6), Ev(7)], head=9, now=1.6)
    assert lag.step(50, 1.9).page is None  # the interval since the last request
    second = _page(lag, queued=50, now=2.0)
    assert second.room_id == "s"  # rooms take turns


def test_a_peer_that_took_the_whole_page_gets_the_next_at_once() -> None:
    """A fast reader (nothing queued once its page was written) needs no interval, so one
    that lagged once in a busy room catches up; a failed page still waits for it."""
    lag = _lagging(5)
    first = _page(lag, now=1.0)
    lag.page_done(first, [Ev(6), Ev(7)], head=30, now=1.05)
    assert lag.step(10, 1.1).page is None  # some of it not taken yet
    second = _page(lag, queued=0, now=1.1)
    assert second.after_seq == 7
    assert lag.step(0, 1.15).page is None  # in flight
    lag.page_failed(second)
    assert lag.step(0, 1.2).page is None  # history failed: the interval applies
    assert _page(lag, queued=0, now=2.1).after_seq == 7


def test_a_full_page_moves_the_position_and_the_tail_is_let_go() -> None:
    """A page short of the head is written; live events kept meanwhile are let go (the next
    page has them) and the room stays behind at the page's end."""
    lag = _lagging(5)
    request = _page(lag)
    lag.withhold("r", Ev(10), position=5, size=100)
    out = lag.page_done(request, [Ev(6), Ev(7), Ev(8)], head=10, now=1.2)
    assert [e.seq for e in out] == [6, 7, 8]
    assert lag.behind == {"r": 8} and lag.phase is Phase.LAGGING


def test_the_page_that_reaches_the_head_switches_to_live_with_no_gap_or_repeat() -> None:
    """Events released while the last page was in flight follow it, those the page had are
    not repeated, and the room is live again."""
    lag = _lagging(5)
    request = _page(lag)
    for seq in (7, 8, 9):  # released live while the page was read
        lag.withhold("r", Ev(seq), position=5, size=100)
    out = lag.page_done(request, [Ev(6), Ev(7), Ev(8)], head=8, now=1.2)
    assert [e.seq for e in out] == [6, 7, 8, 9]
    assert lag.live and lag.behind == {}
    assert lag.step(0, 5.0).page is None and lag.phase is Phase.LIVE


def test_a_hole_between_page_and_tail_waits_for_the_next_page() -> None:
    """A tail that does not continue the page (an event lost on the bus) is not written past
    the hole; the room stays behind where the written events end."""
    lag = _lagging(5)
    request = _page(lag)
    lag.withhold("r", Ev(9), position=5, size=100)
    out = lag.page_done(request, [Ev(6), Ev(7)], head=7, now=1.2)
    assert [e.seq for e in out] == [6, 7]
    assert lag.behind == {"r": 7}


def test_a_tail_past_its_bound_is_let_go() -> None:
    """Past ``tail_max`` events kept during one page, the switch waits for the next page
    (memory stays bounded whatever the room's rate)."""
    lag = _lagging(5)
    request = _page(lag)
    for seq in range(7, 7 + LIMITS.tail_max + 1):
        lag.withhold("r", Ev(seq), position=5, size=100)
    out = lag.page_done(request, [Ev(6)], head=6, now=1.2)
    assert [e.seq for e in out] == [6] and lag.behind == {"r": 6}


def test_an_answer_for_a_room_left_meanwhile_is_ignored() -> None:
    """Leaving the room while its page is in flight: the page writes nothing."""
    lag = _lagging(5)
    request = _page(lag)
    lag.forget("r")
    assert lag.page_done(request, [Ev(6)], head=6, now=1.2) == []
    assert lag.live


def test_a_failed_page_is_asked_again_after_the_interval() -> None:
    """History unavailable: the same position is asked again, once the interval passed."""
    lag = _lagging(5)
    request = _page(lag, now=1.0)
    lag.page_failed(request)
    assert lag.step(0, 1.5).page is None
    assert _page(lag, now=2.0).after_seq == 5


def test_a_connection_that_never_drains_is_cut_at_the_deadline() -> None:
    """A queue that does not shrink for the deadline means cut; one that shrinks, however
    slowly, is progress and restarts the clock."""
    lag = _lagging(5, now=0.0)
    assert not lag.step(5000, 1.0).cut
    assert not lag.step(5000, 10.9).cut
    assert lag.step(5000, 11.0).cut
    slow = _lagging(5, now=0.0)
    for t in range(1, 60):
        assert not slow.step(5000 - t, float(t)).cut  # reads a byte a second


def test_presence_held_is_coalesced_and_handed_back_once_drained() -> None:
    """The latest presence event per room is kept and written when the queue drains."""
    lag: CatchUp[Ev] = CatchUp(LIMITS, now=0.0)
    lag.hold_presence("r", Ev(None, "r1"))
    lag.hold_presence("r", Ev(None, "r2"))
    lag.hold_presence("s", Ev(None, "s1"))
    assert not lag.live and lag.step(500, 1.0).presence == []
    assert [e.room for e in lag.step(50, 2.0).presence] == ["r2", "s1"]
    assert lag.live


@settings(max_examples=200, deadline=None)
@given(
    start=st.integers(0, 20),
    total=st.integers(0, 120),
    plan=st.lists(st.tuples(st.integers(0, 30), st.booleans(), st.integers(0, 3)), max_size=40),
)
def test_every_event_exactly_once_in_order(
    start: int, total: int, plan: list[tuple[int, bool, int]]
) -> None:
    """Whatever the room's rate, page sizes and drain timing, what the connection is written
    (before lagging, pages, tails, then live) is each seq after its position exactly once,
    in order."""
    limits = CatchUpLimits(
        low=100, target=1000, page_max=7, interval_s=0.0, deadline_s=1e9, tail_max=5
    )
    history = list(range(1, start + 1))  # committed seqs (the room's head is len(history))
    released = start  # the gateway's sequencer released every seq up to this one
    written = list(range(1, start + 1))
    lag: CatchUp[Ev] = CatchUp(limits, now=0.0)

    def release_live(n: int) -> None:
        nonlocal released
        for _ in range(n):
            if len(history) >= total + start:
                break
            history.append(len(history) + 1)
        while released < len(history):
            released += 1
            if "r" in lag.behind:
                lag.withhold("r", Ev(released), position=written[-1] if written else 0, size=100)
            elif released > (written[-1] if written else 0):
                written.append(released)

    lag.withhold("r", Ev(start + 1), position=start, size=100)  # the reader fell behind
    now = 0.0
    for commits, drained, during in plan:
        now += 1.0
        release_live(commits)
        request = lag.step(0 if drained else 500, now).page
        if request is None:
            continue
        page = [Ev(s) for s in history if s > request.after_seq][: request.limit]
        head = len(history)
        release_live(during)  # released while the page was in flight
        written += [e.seq for e in lag.page_done(request, page, head=head, now=now) if e.seq]
    for _ in range(1000):  # then the room goes quiet and the reader drains
        if "r" not in lag.behind:
            break
        now += 1.0
        request = lag.step(0, now).page
        if request is not None:
            page = [Ev(s) for s in history if s > request.after_seq][: request.limit]
            out = lag.page_done(request, page, head=len(history), now=now)
            written += [e.seq for e in out if e.seq]
    assert written == list(range(1, len(history) + 1))
