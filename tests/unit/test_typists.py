"""The typist table and its pace (chat_gateway.rooms.typists) and the per-user bound on
typing signals (chat_gateway.rooms.typingrate), driven with plain values and no clock."""

from __future__ import annotations

import json

import pytest

from chat_gateway.protocol.native import NativeCodec
from chat_gateway.protocol.socketio import SocketIOCodec
from chat_gateway.protocol.wsframe import text_frame
from chat_gateway.rooms.typingrate import TypingRate
from chat_gateway.rooms.typists import NAMES_BYTES, TypingView, Typists

TTL, INTERVAL = 6.0, 1.0
WIDE = "\U0001d51e"
"""A character of 4 bytes in UTF-8."""


def _table(max_names: int = 5) -> Typists:
    return Typists(ttl_s=TTL, interval_s=INTERVAL, max_names=max_names)


def test_a_start_is_a_change_and_a_renewal_is_not() -> None:
    """A new typist changes what members see; the same typist renewing does not."""
    t = _table()
    assert t.start("u1", "ann@x.io", 0.0) is True
    assert t.start("u1", "ann@x.io", 2.0) is False
    assert t.view() == TypingView(["ann@x.io"], 1)


def test_stop_and_a_message_clear_the_typist_once() -> None:
    """Stopping (or a message from them: the same call) clears a typist; again is no change."""
    t = _table()
    t.start("u1", "ann@x.io", 0.0)
    t.start("u2", "bob@x.io", 0.0)
    assert t.stop("u1") is True
    assert t.stop("u1") is False
    assert t.stop("nobody") is False
    assert t.view() == TypingView(["bob@x.io"], 1)


def test_a_typist_not_renewed_expires_and_a_renewed_one_stays() -> None:
    """After the TTL without renewal a typist is gone; a renewal moves their expiry on."""
    t = _table()
    t.start("u1", "ann@x.io", 0.0)
    t.start("u2", "bob@x.io", 0.0)
    t.start("u2", "bob@x.io", 3.0)  # renewed
    assert t.expire(5.0) is False
    assert t.expire(TTL) is True
    assert t.view() == TypingView(["bob@x.io"], 1)
    assert t.expire(3.0 + TTL) is True and len(t) == 0


def test_names_are_bounded_and_the_count_covers_everyone() -> None:
    """At most max_names emails, oldest typist first (a renewal keeps its place); the
    count is everyone's."""
    t = _table(max_names=2)
    for i in range(4):
        t.start(f"u{i}", f"user{i}@x.io", float(i))
    t.start("u0", "user0@x.io", 5.0)
    assert t.view() == TypingView(["user0@x.io", "user1@x.io"], 4)


def test_a_member_never_sees_themselves() -> None:
    """The view without a typist leaves them out of the names and the count."""
    t = _table(max_names=1)
    t.start("u1", "ann@x.io", 0.0)
    t.start("u2", "bob@x.io", 0.0)
    assert t.view(without="u1") == TypingView(["bob@x.io"], 1)
    assert t.view(without="u2") == TypingView(["ann@x.io"], 1)
    alone = _table()
    alone.start("u1", "ann@x.io", 0.0)
    assert alone.view(without="u1") == TypingView([], 0)


def test_long_names_stay_within_the_byte_budget() -> None:
    """Emails of the longest kind (254 characters of 4-byte UTF-8) never take the names past
    NAMES_BYTES; the frame of either protocol stays under 1 KiB with the longest room id."""
    t = _table()
    for i in range(10):
        t.start(f"u{i}", f"{WIDE * 60}{i}@{WIDE * 180}.io", 0.0)
    view = t.view()
    assert view.count == 10 and len(view.users) < 5
    assert len(json.dumps(view.users, ensure_ascii=False).encode()) <= NAMES_BYTES
    payload = json.dumps(view.payload("r" * 64), ensure_ascii=False).encode()
    for codec in (SocketIOCodec, NativeCodec):
        assert len(text_frame(codec.encode_event("typing", payload))) <= 1024


def test_the_first_change_after_a_quiet_interval_goes_at_once() -> None:
    """Leading edge: nothing sent for an interval, a change is taken at once."""
    t = _table()
    t.start("u1", "ann@x.io", 10.0)
    assert t.due(10.0) == 10.0
    assert t.take(10.0) == {}  # taken; the frame before showed nobody
    assert t.take(10.0) is None  # nothing waits any more


def test_changes_within_the_interval_wait_and_go_together() -> None:
    """At most one frame per interval: changes after a frame wait until the interval has
    passed, then are taken in one."""
    t = _table()
    t.start("u1", "ann@x.io", 0.0)
    assert t.take(0.0) is not None
    t.start("u2", "bob@x.io", 0.2)
    t.stop("u1")
    assert t.take(0.5) is None
    assert t.due(0.5) == pytest.approx(INTERVAL)
    before = t.take(INTERVAL)
    assert before is not None and t.view(shown=before) == TypingView(["ann@x.io"], 1)
    assert t.view() == TypingView(["bob@x.io"], 1)


def test_due_is_the_next_expiry_when_nothing_waits() -> None:
    """With typists and nothing to send, the table wakes for the first expiry (a renewal
    since is seen when it wakes: never late, one early wake at most)."""
    t = _table()
    t.start("u1", "ann@x.io", 0.0)
    t.take(0.0)
    t.start("u2", "bob@x.io", 2.0)
    t.take(2.0)
    assert t.due(2.0) == TTL
    t.start("u1", "ann@x.io", 3.0)  # renewed: the table wakes early at worst...
    assert t.due(3.0) == TTL
    assert t.expire(TTL) is False  # ...finds nobody to drop, and knows the next expiry
    assert t.due(TTL) == 2.0 + TTL


def test_an_empty_table_keeps_its_pace_then_may_go() -> None:
    """Cleared, the table still holds the pace for the rest of the interval (a start then
    waits), and says it may be dropped after."""
    t = _table()
    t.start("u1", "ann@x.io", 0.0)
    t.take(0.0)
    t.stop("u1")
    assert t.take(0.3) is None
    assert t.due(0.3) == INTERVAL
    assert t.take(INTERVAL) is not None and t.view() == TypingView([], 0)
    assert t.due(INTERVAL + 0.5) == 2 * INTERVAL
    assert t.due(2 * INTERVAL) is None


def test_the_last_frame_is_remembered_for_who_is_involved() -> None:
    """take() returns what the frame before showed and last holds what this one shows, so
    a typist who just started (their own view unchanged) can be left out; a former typist
    is still involved once (their view is still their own)."""
    t = _table()
    t.start("u1", "ann@x.io", 0.0)
    before = t.take(0.0)
    assert before == {}
    assert t.view(without="u1") == t.view(without="u1", shown=before) == TypingView([], 0)
    assert t.view(shown=t.last) == TypingView(["ann@x.io"], 1)
    t.stop("u1")
    before = t.take(INTERVAL)
    assert before is not None and t.involves("u1", before) and not t.involves("u2", before)
    assert not t.involves("u1", t.last)


def test_the_rate_bound_allows_a_burst_then_the_rate() -> None:
    """A user may burst, then one signal per 1/rate seconds; others are not affected."""
    rate = TypingRate(rate=2.0, burst=3.0)
    assert [rate.take("u1", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert rate.take("u1", 0.0) == pytest.approx(0.5)
    assert rate.take("u2", 0.0) == 0.0
    assert rate.take("u1", 0.5) == 0.0
    assert rate.take("u1", 0.5) > 0


def test_the_rate_bound_forgets_refilled_users_when_full() -> None:
    """Past max_users, buckets that have refilled are dropped; busy ones are kept."""
    rate = TypingRate(rate=1.0, burst=2.0, max_users=2)
    rate.take("idle", 0.0)
    rate.take("busy", 9.0)
    rate.take("busy", 9.0)  # its bucket is empty
    rate.take("new", 10.0)
    assert len(rate) == 2
    assert rate.take("busy", 10.0) == 0.0  # one token refilled since 9.0
    assert rate.take("busy", 10.0) > 0  # its bucket was kept, not made anew


def test_a_room_too_large_for_the_frame_rate_is_paced_slower() -> None:
    """After a frame to more members than frames_per_s allows per interval, the next waits
    members / frames_per_s; after a small one, the interval again."""
    t = Typists(ttl_s=60.0, interval_s=INTERVAL, max_names=5, frames_per_s=2000.0)
    t.start("u1", "ann@x.io", 0.0)
    assert t.take(0.0) is not None
    t.spent(10_000)
    t.start("u2", "bob@x.io", 1.0)
    assert t.take(INTERVAL) is None
    assert t.due(INTERVAL) == pytest.approx(5.0)
    assert t.take(5.0) is not None
    t.spent(10)
    t.start("u3", "cid@x.io", 5.5)
    assert t.due(5.5) == pytest.approx(5.0 + INTERVAL)
