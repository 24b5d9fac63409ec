"""The pure planner of batch appends: each connection's order, one batch out per
connection, bounded batches, and turns at the head."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from chat_gateway.appends.plan import AppendPlan, Slot


def _items(batch: list[Slot[str]]) -> list[str | None]:
    return [slot.item for slot in batch]


def test_appends_leave_in_slot_order_even_when_filled_out_of_order() -> None:
    plan: AppendPlan[str] = AppendPlan(max_items=100, max_bytes=10_000)
    a1, a2, a3 = plan.reserve("a"), plan.reserve("a"), plan.reserve("a")
    plan.fill(a3, "a3", 1)
    plan.fill(a2, "a2", 1)
    assert plan.take() == [] and not plan.ready()  # a1 is still being prepared
    plan.fill(a1, "a1", 1)
    assert _items(plan.take()) == ["a1", "a2", "a3"]


def test_a_cancelled_slot_does_not_hold_back_the_ones_behind_it() -> None:
    plan: AppendPlan[str] = AppendPlan(max_items=100, max_bytes=10_000)
    a1, a2, a3 = plan.reserve("a"), plan.reserve("a"), plan.reserve("a")
    plan.fill(a3, "a3", 1)
    plan.cancel(a2)
    plan.fill(a1, "a1", 1)
    assert _items(plan.take()) == ["a1", "a3"]
    assert len(plan) == 0


def test_one_batch_out_per_connection_others_go_meanwhile() -> None:
    plan: AppendPlan[str] = AppendPlan(max_items=100, max_bytes=10_000)
    a1 = plan.reserve("a")
    plan.fill(a1, "a1", 1)
    first = plan.take()
    a2, b1 = plan.reserve("a"), plan.reserve("b")
    plan.fill(a2, "a2", 1)
    plan.fill(b1, "b1", 1)
    assert _items(plan.take()) == ["b1"]  # a waits for its batch in flight
    assert plan.take() == []
    plan.done(first)
    assert _items(plan.take()) == ["a2"]


def test_batches_are_bounded_in_items_and_bytes() -> None:
    plan: AppendPlan[str] = AppendPlan(max_items=3, max_bytes=100)
    for i in range(5):
        plan.fill(plan.reserve(f"c{i}"), f"m{i}", 10)
    assert _items(plan.take()) == ["m0", "m1", "m2"]
    big: AppendPlan[str] = AppendPlan(max_items=100, max_bytes=100)
    for i in range(3):
        big.fill(big.reserve(f"c{i}"), f"m{i}", 60)
    assert _items(big.take()) == ["m0"]  # alone over the budget still leaves
    assert _items(big.take()) == ["m1"]


def test_a_busy_connection_takes_turns_at_the_head() -> None:
    plan: AppendPlan[str] = AppendPlan(max_items=2, max_bytes=10_000)
    for i in range(4):
        plan.fill(plan.reserve("busy"), f"busy{i}", 1)
    plan.fill(plan.reserve("quiet"), "quiet0", 1)
    first = plan.take()
    assert _items(first) == ["busy0", "busy1"]
    assert _items(plan.take()) == ["quiet0"]
    plan.done(first)
    plan.fill(plan.reserve("late"), "late0", 1)
    assert _items(plan.take()) == ["busy2", "busy3"]


@given(
    st.lists(
        st.tuples(st.sampled_from("abc"), st.sampled_from(["fill", "cancel"])),
        min_size=1,
        max_size=40,
    ),
    st.randoms(use_true_random=False),
    st.integers(min_value=1, max_value=5),
)
def test_each_connection_keeps_its_order_whatever_the_interleaving(
    ops: list[tuple[str, str]], rnd: random.Random, max_items: int
) -> None:
    """Reserve in order, fill or cancel in any order, take and answer batches at random:
    every filled append leaves exactly once, each connection's in reservation order, and
    never two batches of one connection out at once."""
    plan: AppendPlan[str] = AppendPlan(max_items=max_items, max_bytes=10_000)
    slots = [(conn, op, plan.reserve(conn), f"{conn}{i}") for i, (conn, op) in enumerate(ops)]
    pending = list(range(len(slots)))
    rnd.shuffle(pending)
    out: list[list[Slot[str]]] = []
    sent: list[str] = []
    while pending or out or plan.ready():
        choice = rnd.random()
        if pending and choice < 0.5:
            conn, op, slot, item = slots[pending.pop()]
            if op == "fill":
                plan.fill(slot, item, 1)
            else:
                plan.cancel(slot)
        elif out and choice < 0.75:
            plan.done(out.pop(rnd.randrange(len(out))))
        else:
            batch = plan.take()
            if batch:
                conns_out = {s.sender for b in out for s in b}
                assert not conns_out & {s.sender for s in batch}
                assert len(batch) <= max_items
                out.append(batch)
                sent += [s.item for s in batch if s.item is not None]
    filled = [item for _, op, _, item in slots if op == "fill"]
    assert sorted(sent) == sorted(filled)
    for conn in "abc":
        mine = [item for item in sent if item.startswith(conn)]
        assert mine == [item for item in filled if item.startswith(conn)]
