"""A large room's presence changes coalesced into net diffs (chat_gateway.presencebatch)."""

from __future__ import annotations

from chat_gateway.rooms.presencebatch import PresenceBatch


def test_an_empty_batch_has_nothing_to_send() -> None:
    assert not PresenceBatch(max_names=5)


def test_joins_and_leaves_are_kept_in_order_with_the_latest_count() -> None:
    batch = PresenceBatch(max_names=5)
    batch.add("user_joined", "a@x.io", 101)
    batch.add("user_joined", "b@x.io", 102)
    batch.add("user_left", "c@x.io", 101)
    assert batch
    assert batch.take("r") == {
        "roomId": "r", "joins": ["a@x.io", "b@x.io"], "leaves": ["c@x.io"], "count": 101,
    }  # fmt: skip
    assert not batch, "take starts a new interval"


def test_the_diff_is_net() -> None:
    """Joined then left within the interval: in neither list; left then back: in neither
    (there before and after). Repeats count once."""
    batch = PresenceBatch(max_names=5)
    batch.add("user_joined", "brief@x.io", 201)
    batch.add("user_left", "brief@x.io", 200)
    batch.add("user_left", "back@x.io", 199)
    batch.add("user_joined", "back@x.io", 200)
    batch.add("user_joined", "twice@x.io", 201)
    batch.add("user_joined", "twice@x.io", 201)
    diff = batch.take("r")
    assert (diff["joins"], diff["leaves"], diff["count"]) == (["twice@x.io"], [], 201)
    assert "truncated" not in diff


def test_past_the_cap_the_diff_says_truncated() -> None:
    batch = PresenceBatch(max_names=2)
    for n in range(5):
        batch.add("user_joined", f"u{n}@x.io", 100 + n)
    diff = batch.take("r")
    assert diff["joins"] == ["u0@x.io", "u1@x.io"]
    assert diff["truncated"] is True and diff["count"] == 104
    batch.add("user_left", "u0@x.io", 103)
    assert "truncated" not in batch.take("r"), "each interval starts untruncated"
