"""The gateway's inbox index (pure): heads and watermarks only move forward, the sender's
own message is read, and rooms are followed while someone here is a member."""

from __future__ import annotations

from chat_gateway.users.inboxindex import InboxIndex


def test_a_message_moves_the_head_of_every_follower_member_once() -> None:
    """A new message raises each follower's head and unread; the same seq again (a
    duplicate delivery) or an older one changes nothing."""
    index = InboxIndex()
    assert index.add_user("u1", [("r", 3, 5)]) == ["r"]
    assert index.add_user("u2", [("r", 5, 5), ("s", 0, 0)]) == ["s"]
    moved = dict(index.message("r", 6, "u9"))
    assert {u: (s.read_seq, s.last_seq, s.unread) for u, s in moved.items()} == {
        "u1": (3, 6, 3),
        "u2": (5, 6, 1),
    }
    assert index.message("r", 6, "u9") == []
    assert index.message("r", 4, "u9") == []


def test_the_senders_own_message_is_never_unread_for_them() -> None:
    """The sender's watermark moves to their own message; the others' unread grows."""
    index = InboxIndex()
    index.add_user("me", [("r", 2, 7)])
    index.add_user("you", [("r", 7, 7)])
    moved = dict(index.message("r", 8, "me"))
    assert (moved["me"].read_seq, moved["me"].unread) == (8, 0)
    assert moved["you"].unread == 1


def test_watermarks_never_move_back() -> None:
    """A read state older than the one known is ignored; a newer one lowers unread."""
    index = InboxIndex()
    index.add_user("u", [("r", 10, 20)])
    index.read("u", "r", 4)
    assert index.rooms_of("u")["r"].read_seq == 10
    index.read("u", "r", 18)
    assert index.rooms_of("u")["r"].unread == 2


def test_a_second_listing_merges_by_the_larger_value() -> None:
    """Reading the user's rooms again (after subscribing) keeps the newer of each value."""
    index = InboxIndex()
    index.add_user("u", [("r", 1, 9)])
    assert index.add_user("u", [("r", 3, 8), ("t", 0, 0)]) == ["t"]
    state = index.rooms_of("u")["r"]
    assert (state.read_seq, state.last_seq) == (3, 9)


def test_rooms_are_followed_while_a_follower_is_a_member() -> None:
    """A room is listened to from its first follower member to its last: joining and
    leaving rooms and users going away say when to subscribe and unsubscribe."""
    index = InboxIndex()
    index.add_user("a", [("r", 0, 0)])
    index.add_user("b", [])
    assert index.joined("b", "r", 0, 0) is False  # already listened to for a
    assert index.joined("b", "q", 4, 4) is True
    assert index.follows("q") and index.follows("r")
    assert index.joined("nobody", "z", 0, 0) is False
    assert index.left("a", "r") is False  # b is still a member
    assert sorted(index.remove_user("b")) == ["q", "r"]
    assert not index.follows("r") and not index.follows("q")
    assert index.message("r", 1, None) == []
