"""The gateway's inbox index (pure): heads and watermarks only move forward, the sender's
own message is read, changes are not unread (a delete of an unread message is one less), and
rooms are followed while someone here is a member."""

from __future__ import annotations

from chat_gateway.users.inboxindex import InboxIndex


def test_a_message_moves_the_head_of_every_follower_member_once() -> None:
    """A new message raises each follower's head and unread; the same seq again (a
    duplicate delivery) or an older one changes nothing."""
    index = InboxIndex()
    assert index.add_user("u1", [("r", 3, 5, 2)]) == ["r"]
    assert index.add_user("u2", [("r", 5, 5, 0), ("s", 0, 0, 0)]) == ["s"]
    moved = dict(index.event("r", 6, "u9"))
    assert {u: (s.read_seq, s.last_seq, s.unread) for u, s in moved.items()} == {
        "u1": (3, 6, 3),  # 2 unread (a change among seqs 4 and 5), and this one
        "u2": (5, 6, 1),
    }
    assert index.event("r", 6, "u9") == []
    assert index.event("r", 4, "u9") == []


def test_the_senders_own_message_is_never_unread_for_them() -> None:
    """The sender's watermark moves to their own message; the others' unread grows."""
    index = InboxIndex()
    index.add_user("me", [("r", 2, 7, 5)])
    index.add_user("you", [("r", 7, 7, 0)])
    moved = dict(index.event("r", 8, "me"))
    assert (moved["me"].read_seq, moved["me"].unread) == (8, 0)
    assert moved["you"].unread == 1


def test_watermarks_never_move_back() -> None:
    """A read state older than the one known is ignored; a newer one lowers unread."""
    index = InboxIndex()
    index.add_user("u", [("r", 10, 20, 10)])
    index.read("u", "r", 4, 20, 16)
    assert (index.rooms_of("u")["r"].read_seq, index.rooms_of("u")["r"].unread) == (10, 10)
    index.read("u", "r", 18, 20, 1)
    assert index.rooms_of("u")["r"].unread == 1


def test_a_second_listing_merges_by_the_larger_value() -> None:
    """Reading the user's rooms again (after subscribing) keeps the newer of each value."""
    index = InboxIndex()
    index.add_user("u", [("r", 1, 9, 8)])
    assert index.add_user("u", [("r", 3, 8, 4), ("t", 0, 0, 0)]) == ["t"]
    state = index.rooms_of("u")["r"]
    assert (state.read_seq, state.last_seq, state.unread) == (3, 9, 5)


def test_rooms_are_followed_while_a_follower_is_a_member() -> None:
    """A room is listened to from its first follower member to its last: joining and
    leaving rooms and users going away say when to subscribe and unsubscribe."""
    index = InboxIndex()
    index.add_user("a", [("r", 0, 0, 0)])
    index.add_user("b", [])
    assert index.joined("b", "r", 0, 0) is False  # already listened to for a
    assert index.joined("b", "q", 4, 4) is True
    assert index.follows("q") and index.follows("r")
    assert index.joined("nobody", "z", 0, 0) is False
    assert index.left("a", "r") is False  # b is still a member
    assert sorted(index.remove_user("b")) == ["q", "r"]
    assert not index.follows("r") and not index.follows("q")
    assert index.event("r", 1, None) == []


def test_changes_are_not_unread_and_a_deleted_unread_message_counts_no_more() -> None:
    """An edit or a reaction moves the head but not the count (and sends no update); a
    delete of a message after the watermark is one unread less, of one before it nothing."""
    index = InboxIndex()
    index.add_user("u", [("r", 4, 6, 2)])
    assert index.event("r", 7, "x", "edit", 5) == []
    assert index.event("r", 8, "x", "react", 6) == []
    assert index.event("r", 9, "x", "delete", 3) == []  # already read
    (moved,) = index.event("r", 10, "x", "delete", 5)
    assert (moved[1].last_seq, moved[1].unread) == (10, 1)
    assert index.event("r", 10, "x", "delete", 6) == []  # a duplicate delivery


def test_a_read_state_counted_at_an_older_head_adds_what_came_since() -> None:
    """A mark counted by history before messages the index has already seen keeps them
    unread."""
    index = InboxIndex()
    index.add_user("u", [("r", 0, 5, 5)])
    index.event("r", 6, "x")
    index.event("r", 7, "x")
    index.read("u", "r", 5, 5, 0)  # history counted at head 5
    state = index.rooms_of("u")["r"]
    assert (state.read_seq, state.last_seq, state.unread) == (5, 7, 2)
