"""Edits, deletes and reactions through the real gateway, session and history handlers on
the in-memory stores (tests/support/inprocess.py): the events, their acks and errors, what
members receive live, and what get_history answers."""

from __future__ import annotations

from chat_common.changes import RoomView
from tests.support.inprocess import InProcessChat, NativePeer, SocketIOPeer
from tests.support.inprocess import ok as _ok

ALICE, BOB = "alice@example.com", "bob@example.com"
Peer = NativePeer | SocketIOPeer


async def _code(peer: Peer, event: str, data: object) -> str:
    ack = await peer.call(event, data)
    assert ack["ok"] is False, ack
    code: str = ack["error"]["code"]
    return code


async def test_changes_are_seqd_events_that_members_receive() -> None:
    """An edit, a reaction and a delete are acked with their stored event (the room's next
    seqs) and reach the other member, native and Socket.IO alike, as ``message_changed`` in
    seq order; get_history shows the messages as they are now, and its events after a seq
    are what the live stream carried."""
    async with InProcessChat() as chat:
        alice = await chat.native()
        bob = await chat.socketio()
        await bob.connect()
        await _ok(alice, "join", {"email": ALICE, "roomId": "den"})
        joined = await _ok(bob, "join", {"email": BOB, "roomId": "den"})
        sent = (await _ok(alice, "send_message", {"roomId": "den", "text": "helo"}))["message"]
        kept = (await _ok(alice, "send_message", {"roomId": "den", "text": "keep"}))["message"]
        edit = await _ok(alice, "edit_message", {"roomId": "den", "seq": sent["seq"],
                                                 "text": "hello", "clientMsgId": "e-1"})  # fmt: skip
        react = await _ok(bob, "react", {"roomId": "den", "seq": kept["seq"], "emoji": "👍"})
        gone = await _ok(alice, "delete_message", {"roomId": "den", "seq": sent["seq"]})
        acked = [edit["message"], react["message"], gone["message"]]
        assert [(m["seq"], m["kind"], m["target"]) for m in acked] == [
            (3, "edit", 1), (4, "react", 2), (5, "delete", 1)
        ]  # fmt: skip
        assert (acked[0]["text"], acked[0]["clientMsgId"], acked[1]["emoji"]) == (
            "hello",
            "e-1",
            "👍",
        )
        received = [(await bob.event("message_changed", seq=seq))[0] for seq in (3, 4, 5)]
        assert received == acked
        view = RoomView(BOB)
        view.load(joined["history"], last_seq=joined["lastSeq"])
        for seq in (1, 2):
            assert view.apply((await bob.event("new_message", seq=seq))[0])
        for event in received:
            assert view.apply(event)
        now = await _ok(bob, "get_history", {"roomId": "den"})
        assert now["messages"] == view.messages() and now["lastSeq"] == 5
        assert now["messages"][0]["deleted"] is True and now["messages"][0]["text"] == ""
        assert now["messages"][1]["reactions"] == [{"emoji": "👍", "count": 1, "me": True}]
        events = await _ok(alice, "get_history", {"roomId": "den", "afterSeq": 2})
        assert [e["seq"] for e in events["messages"]] == [3, 4, 5]
        assert events["messages"][0]["text"] == ""  # the deleted message's edit, erased


async def test_changes_are_refused_with_clear_codes() -> None:
    """Someone else's edit is FORBIDDEN, a change to no message NOT_FOUND, a change to a
    deleted one or a reaction twice CONFLICT, a change outside a joined room NOT_IN_ROOM,
    and malformed ones INVALID_ARGUMENT; none of them takes a seq."""
    async with InProcessChat() as chat:
        alice, bob = await chat.native(), await chat.native()
        for peer, email in ((alice, ALICE), (bob, BOB)):
            await _ok(peer, "join", {"email": email, "roomId": "den"})
        await _ok(alice, "send_message", {"roomId": "den", "text": "mine"})
        await _ok(bob, "react", {"roomId": "den", "seq": 1, "emoji": "🎉"})
        assert (
            await _code(bob, "edit_message", {"roomId": "den", "seq": 1, "text": "x"})
            == "FORBIDDEN"
        )
        assert await _code(bob, "delete_message", {"roomId": "den", "seq": 1}) == "FORBIDDEN"
        assert await _code(bob, "react", {"roomId": "den", "seq": 2, "emoji": "🎉"}) == "NOT_FOUND"
        assert await _code(bob, "react", {"roomId": "den", "seq": 9, "emoji": "🎉"}) == "NOT_FOUND"
        assert await _code(bob, "react", {"roomId": "den", "seq": 1, "emoji": "🎉"}) == "CONFLICT"
        assert await _code(bob, "unreact", {"roomId": "den", "seq": 1, "emoji": "👍"}) == "CONFLICT"
        assert (
            await _code(bob, "react", {"roomId": "elsewhere", "seq": 1, "emoji": "🎉"})
            == "NOT_IN_ROOM"
        )
        for bad in ({"roomId": "den", "seq": 0, "emoji": "🎉"}, {"roomId": "den", "seq": 1, "emoji": "a b"},
                    {"roomId": "den", "seq": 1, "emoji": "x" * 33}, {"roomId": "den", "seq": "1", "emoji": "🎉"},
                    {"roomId": "den", "seq": 1}):  # fmt: skip
            assert await _code(bob, "react", bad) == "INVALID_ARGUMENT"
        assert (
            await _code(alice, "edit_message", {"roomId": "den", "seq": 1, "text": ""})
            == "INVALID_ARGUMENT"
        )
        await _ok(alice, "delete_message", {"roomId": "den", "seq": 1})
        assert (
            await _code(alice, "edit_message", {"roomId": "den", "seq": 1, "text": "x"})
            == "CONFLICT"
        )
        assert await _code(alice, "delete_message", {"roomId": "den", "seq": 1}) == "CONFLICT"
        events = await _ok(alice, "get_history", {"roomId": "den", "afterSeq": 0})
        assert [e.get("kind") for e in events["messages"]] == [None, "react", "delete"]


async def test_a_change_retried_with_its_client_msg_id_is_stored_once() -> None:
    """The same edit sent twice with one clientMsgId is acked twice with the one event."""
    async with InProcessChat() as chat:
        alice = await chat.native()
        await _ok(alice, "join", {"email": ALICE, "roomId": "den"})
        await _ok(alice, "send_message", {"roomId": "den", "text": "v1"})
        edit = {"roomId": "den", "seq": 1, "text": "v2", "clientMsgId": "edit-1"}
        first, again = (
            await _ok(alice, "edit_message", edit),
            await _ok(alice, "edit_message", edit),
        )
        assert first["message"] == again["message"] and first["message"]["seq"] == 2
        events = await _ok(alice, "get_history", {"roomId": "den", "afterSeq": 0})
        assert len(events["messages"]) == 2


async def test_unread_counts_only_messages_and_forgets_deleted_ones() -> None:
    """The inbox of a member who was away counts the messages others sent, not the changes,
    and not a message deleted before they came back; a follower's inbox_update says one
    less when an unread message is deleted."""
    async with InProcessChat() as chat:
        alice, bob = await chat.native(), await chat.native()
        for peer, email in ((alice, ALICE), (bob, BOB)):
            await _ok(peer, "join", {"email": email, "roomId": "den"})
        await _ok(alice, "leave", {"roomId": "den"})
        follow = await _ok(alice, "get_rooms", {})
        assert follow["rooms"][0]["unread"] == 0
        for text in ("a", "b", "c"):
            await _ok(bob, "send_message", {"roomId": "den", "text": text})
        await alice.event("inbox_update", roomId="den", unread=3)
        await _ok(bob, "react", {"roomId": "den", "seq": 1, "emoji": "👍"})
        await _ok(bob, "edit_message", {"roomId": "den", "seq": 2, "text": "B"})
        await _ok(bob, "delete_message", {"roomId": "den", "seq": 3})
        update = await alice.event("inbox_update", roomId="den", lastSeq=6)
        assert update["unread"] == 2 and "lastMessage" not in update
        again = await _ok(alice, "get_rooms", {})
        room = again["rooms"][0]
        assert (room["unread"], room["lastSeq"], room["lastMessage"]["text"]) == (2, 6, "")
