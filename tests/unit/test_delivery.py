"""The delivery core: who gets which room event, in which order, joining and leaving."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from chat_gateway.rooms.delivery import Delivery, RoomDelivery


@dataclass(frozen=True)
class Ev:
    seq: int | None
    name: str = "new_message"


Core = RoomDelivery[str, Ev]


def _flat(deliveries: list[Delivery[str, Ev]]) -> list[tuple[str, int | None]]:
    return [(client, d.event.seq) for d in deliveries for client in d.clients]


def _live(room: Core, key: str, join_position: int) -> list[tuple[str, int | None]]:
    return _flat(room.activate(room.add(key, key), join_position=join_position))


def test_a_pending_member_gets_nothing_until_activated_then_what_it_missed() -> None:
    """Events during a join are held; activation delivers only those above the join_position,
    and presence as it came."""
    room: Core = RoomDelivery()
    member = room.add("ann", "ann")
    assert _flat(room.offer(Ev(None, "user_joined")).deliveries) == []
    for seq in (4, 5, 6):
        assert room.offer(Ev(seq)).deliveries == []  # the room's head is not known yet
    assert _flat(room.activate(member, join_position=5)) == [("ann", None), ("ann", 6)]
    assert _flat(room.offer(Ev(7)).deliveries) == [("ann", 7)]


def test_join_without_loss_while_the_room_runs() -> None:
    """A second member joining mid-stream gets every message after its join_position exactly once;
    the first member is never held back or moved."""
    room: Core = RoomDelivery()
    assert _live(room, "ann", 0) == []
    bob = room.add("bob", "bob")
    got = _flat(room.offer(Ev(1)).deliveries) + _flat(room.offer(Ev(2)).deliveries)
    assert got == [("ann", 1), ("ann", 2)]
    # bob's join history ended at 1; 2 arrived while he was pending
    assert _flat(room.activate(bob, join_position=1)) == [("bob", 2)]
    assert _flat(room.offer(Ev(3)).deliveries) == [("ann", 3), ("bob", 3)]


def test_gaps_are_reported_and_filled_in_order() -> None:
    """A message ahead of a hole waits; the hole is reported; filling it releases both."""
    room: Core = RoomDelivery()
    _live(room, "ann", 10)
    outcome = room.offer(Ev(13))
    assert outcome.deliveries == [] and outcome.gap == (10, 13)
    assert _flat(room.offer(Ev(11)).deliveries) == [("ann", 11)]
    outcome = room.offer(Ev(12))
    assert _flat(outcome.deliveries) == [("ann", 12), ("ann", 13)] and outcome.gap is None


def test_duplicates_and_old_messages_are_not_delivered_twice() -> None:
    """A seq already delivered, or delivered twice by a gap fill racing the bus, is dropped."""
    room: Core = RoomDelivery()
    _live(room, "ann", 0)
    assert _flat(room.offer(Ev(1)).deliveries) == [("ann", 1)]
    assert room.offer(Ev(1)).deliveries == []


def test_replay_then_live_without_repeats() -> None:
    """A resumed member gets what it missed, then live events above the last replayed seq,
    even those that arrived while the replay was being fetched."""
    room: Core = RoomDelivery()
    _live(room, "bob", 2)
    ann = room.add("ann", "ann")
    for seq in (3, 4):
        room.offer(Ev(seq))
    replayed = room.replay(ann, [Ev(3), Ev(4)], join_position=2)
    assert _flat(replayed) == [("ann", 3), ("ann", 4)]
    assert _flat(room.offer(Ev(5)).deliveries) == [("bob", 5), ("ann", 5)]


def test_leave_in_progress_holds_then_releases_on_failure() -> None:
    """While a leave is recorded the member's events are held; if the leave fails they
    are delivered, in order, and nothing is lost."""
    room: Core = RoomDelivery()
    _live(room, "ann", 0)
    room.hold("ann")
    assert room.offer(Ev(1)).deliveries == []
    assert _flat(room.release("ann")) == [("ann", 1)]
    assert _flat(room.offer(Ev(2)).deliveries) == [("ann", 2)]


def test_the_last_member_leaving_empties_the_room() -> None:
    """remove() says when no local member is left (the subscription can go)."""
    room: Core = RoomDelivery()
    _live(room, "ann", 0)
    _live(room, "bob", 0)
    assert room.remove("ann") is False
    assert room.remove("bob") is True


def test_too_many_held_messages_is_an_overflow() -> None:
    """More messages waiting for a hole than the room may hold: overflow (cut and resync)."""
    room: Core = RoomDelivery(max_held=3)
    _live(room, "ann", 0)
    for seq in (3, 4, 5):
        assert room.offer(Ev(seq)).overflow is False
    assert room.offer(Ev(6)).overflow is True


@given(order=st.permutations(list(range(1, 31))), join_position=st.integers(0, 30))
def test_any_arrival_order_delivers_each_message_once_in_order(
    order: list[int], join_position: int
) -> None:
    """Whatever order the bus delivers 30 messages in, and wherever a joiner's join_position is,
    a live member sees exactly join_position+1..30, in order (gaps filled by later arrivals)."""
    room: Core = RoomDelivery()
    ann = room.add("ann", "ann")
    got = []
    for i, seq in enumerate(order):
        if i == 10:
            got += _flat(room.activate(ann, join_position=join_position))
        got += _flat(room.offer(Ev(seq)).deliveries)
    assert [seq for _, seq in got] == list(range(join_position + 1, 31))
