"""The history checker: a clean history passes, and each kind of fault it exists to find
(an acknowledged message lost, doubled, moved, reordered, missed; a watermark going back)
is counted, on hand-made histories."""

from __future__ import annotations

from tests.support.checker import History, Stored, check


def _clean(n: int = 5) -> tuple[History, list[Stored]]:
    """Alice sends ``n`` messages to r, all acked and stored; Bob, joined at 0, gets all."""
    h = History()
    h.joined("bob", "r", 0)
    rows = []
    for i in range(1, n + 1):
        h.send("alice", "r", f"m{i}", at=float(i))
        h.ack(f"m{i}", i, at=i + 0.1)
        h.delivered("bob", "r", i, f"m{i}")
        rows.append(Stored("r", i, f"m{i}"))
    return h, rows


def test_a_clean_history_is_clean() -> None:
    """Everything acked, stored once, delivered in order: every count 0."""
    h, rows = _clean()
    v = check(h, rows, until=10)
    assert v.clean and (v.sent, v.acked, v.stored) == (5, 5, 5)
    assert v.lost == v.missed == v.unacked_stored == v.unacked_lost == 0
    assert v.longest_stall_s == 0.1


def test_an_acknowledged_message_missing_from_the_store_is_lost() -> None:
    """A commit the isolated primary acknowledged and the promoted standby never had."""
    h, rows = _clean()
    v = check(h, [r for r in rows if r.client_msg_id != "m3"], until=10)
    assert not v.clean and v.lost == 1 and v.gaps == 1
    assert any("m3" in e for e in v.examples)


def test_an_acknowledged_message_stored_at_another_seq_is_counted() -> None:
    """Acked at seq 2, stored at 6: the client was told something that is not so."""
    h, rows = _clean()
    rows[1] = Stored("r", 6, "m2")
    v = check(h, rows, until=10)
    assert v.seq_changed == 1 and v.gaps == 1 and not v.clean


def test_a_message_stored_twice_and_a_seq_used_twice_are_duplicates() -> None:
    """One id in two rows, and two ids at one seq: two duplicates."""
    h, rows = _clean()
    v = check(h, [*rows, Stored("r", 6, "m5"), Stored("r", 2, "x")], until=10)
    assert v.duplicated == 2 and not v.clean


def test_deliveries_that_go_back_or_repeat_are_counted() -> None:
    """Bob sees 1 2 4 3 4: one out of order (3 after 4), one repeated (4)."""
    h, rows = _clean()
    h.deliveries[("bob", "r")] = [(s, f"m{s}") for s in (1, 2, 4, 3, 4, 5)]
    v = check(h, rows, until=10)
    assert (v.out_of_order, v.redelivered, v.missed) == (1, 1, 0)


def test_a_member_that_stayed_is_owed_every_acked_message_after_its_join() -> None:
    """Carol joined at seq 2 and never left: she misses 4. Dave left: he is owed nothing.
    Bob, joined at 0, misses nothing."""
    h, rows = _clean()
    h.joined("carol", "r", 2)
    for seq in (3, 5):
        h.delivered("carol", "r", seq, f"m{seq}")
    h.joined("dave", "r", 0)
    h.left("dave", "r")
    v = check(h, rows, until=10)
    assert v.missed == 1 and any("carol missed acked m4" in e for e in v.examples)


def test_unacknowledged_sends_are_counted_stored_or_not() -> None:
    """Two sends whose acks never came (a timeout): one was committed, one not. Neither is
    a fault; both are reported."""
    h, rows = _clean()
    h.send("alice", "r", "u1", at=6)
    h.error("u1", "timeout", at=7)
    h.send("alice", "r", "u2", at=6)
    h.error("u2", "UNAVAILABLE", at=8)
    v = check(h, [*rows, Stored("r", 6, "u1")], until=10)
    assert v.clean and (v.unacked_stored, v.unacked_lost) == (1, 1)
    assert v.longest_stall_s == 1.0  # 6 to 7 (u1 gave up), 7 to 8 (u2 gave up)


def test_a_watermark_that_goes_back_is_counted() -> None:
    """Told 5, then 3: a read state moved back."""
    h, rows = _clean()
    for mark in (1, 5, 3, 5):
        h.watermark("bob", "r", mark)
    v = check(h, rows, until=10)
    assert v.watermark_back == 1 and not v.clean


def test_rooms_the_scenario_did_not_use_are_ignored() -> None:
    """Rows of other rooms (another test's) do not count."""
    h, rows = _clean()
    v = check(h, [*rows, Stored("other", 1, "z"), Stored("other", 3, "y")], until=10)
    assert v.clean and v.stored == 5


def test_the_longest_stall_is_the_longest_wait_with_sends_pending() -> None:
    """Sends at 0 and 1 acked at 4.5 and 5: nothing settled from 0 to 4.5."""
    h = History()
    h.send("a", "r", "x", at=0)
    h.send("a", "r", "y", at=1)
    h.ack("x", 1, at=4.5)
    h.ack("y", 2, at=5)
    v = check(h, [Stored("r", 1, "x"), Stored("r", 2, "y")], until=9)
    assert v.longest_stall_s == 4.5


def test_a_message_shown_then_gone_is_a_phantom_and_its_replacement_is_missed() -> None:
    """A rewound primary: Bob was shown m3 at seq 3, but the new primary stored x3 there.
    m3 is lost, Bob saw a phantom, and he missed x3 (acked) though he has a seq 3."""
    h, rows = _clean()
    h.send("alice", "r", "x3", at=6)
    h.ack("x3", 3, at=6.1)
    rows[2] = Stored("r", 3, "x3")
    v = check(h, rows, until=10)
    assert (v.lost, v.phantoms, v.missed) == (1, 1, 1) and not v.clean
