"""Scenarios across the gateway and the session and history services, in process: the real
handlers on the in-memory stores, the gateway as its composition root wires it, clients
on recording carriers (tests/support/inprocess.py)."""

from __future__ import annotations

from typing import Any

from chat_gateway.closecodes import CLOSE_SERVICE_RESTART, CLOSE_TAKEN_OVER
from tests.support.inprocess import InProcessChat, NativePeer, SocketIOPeer, gateway_settings

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"


async def _join(peer: NativePeer | SocketIOPeer, email: str, room: str) -> dict[str, object]:
    ack = await peer.call("join", {"email": email, "roomId": room})
    assert ack["ok"] is True, ack
    return ack


async def test_join_send_leave_resume() -> None:
    """A room's whole life in one process: two protocols join, a message goes to both and is
    acked, a dropped Socket.IO client resumes with its pid and offset and gets exactly what it
    missed, and a leave is announced."""
    async with InProcessChat() as chat:
        alice = await chat.native()
        joined = await _join(alice, ALICE, "lobby")
        assert joined["users"] == [ALICE] and joined["history"] == []
        bob = await chat.socketio()
        reply = await bob.connect()
        bob_joined = await _join(bob, BOB, "lobby")
        assert bob_joined["users"] == [ALICE, BOB] and bob_joined["userCount"] == 2
        assert (await alice.event("user_joined", email=BOB))["count"] == 2

        ack = await alice.call(
            "send_message", {"roomId": "lobby", "text": "hi", "clientMsgId": "a1"}
        )
        assert ack["ok"] is True and ack["message"]["seq"] == 1
        message, offset = await bob.event("new_message")
        assert message == ack["message"] and offset == "lobby:1"

        bob.carrier.hang_up(None)  # a drop, no goodbye: the session stays resumable
        await bob.ended()
        for n in (2, 3):
            await alice.call("send_message", {"roomId": "lobby", "text": f"m{n}"})
        back = await chat.socketio()
        resumed = await back.connect({"pid": reply["pid"], "offset": offset})
        assert resumed == {"sid": reply["sid"], "pid": reply["pid"]}
        missed = [(await back.event("new_message"))[0]["text"] for _ in range(2)]
        assert missed == ["m2", "m3"]
        assert (await alice.call("send_message", {"roomId": "lobby", "text": "live"}))["ok"]
        assert (await back.event("new_message"))[0]["text"] == "live"

        assert await back.call("leave", {"roomId": "lobby"}) == {"ok": True}
        assert (await alice.event("user_left", email=BOB))["count"] == 1
        history = await alice.call("get_history", {"roomId": "lobby"})
        assert [m["text"] for m in history["messages"]] == ["hi", "m2", "m3", "live"]


async def test_a_native_resume_replays_what_was_missed() -> None:
    """``resume {sessionId, resumeToken, lastSeq}`` on a new connection carries the session
    on: the same rooms, the messages after ``lastSeq``, and live ones after them."""
    async with InProcessChat() as chat:
        alice, bob = await chat.native(), await chat.native()
        await _join(alice, ALICE, "den")
        joined = await _join(bob, BOB, "den")
        await alice.call("send_message", {"roomId": "den", "text": "before"})
        await bob.event("new_message")
        bob.carrier.hang_up(None)
        await bob.ended()
        await alice.call("send_message", {"roomId": "den", "text": "while away"})
        back = await chat.native()
        resumed = await back.call(
            "resume",
            {"sessionId": joined["sessionId"], "resumeToken": joined["resumeToken"],
             "lastSeq": {"den": 1}},
        )  # fmt: skip
        assert resumed["recovered"] is True and resumed["rooms"] == ["den"]
        assert (await back.event("new_message"))["text"] == "while away"


async def test_a_resume_elsewhere_takes_the_old_connection_over() -> None:
    """Resuming a session whose connection is still open closes that connection with 4009,
    and the old one's end leaves the session (now the new connection's) alone."""
    async with InProcessChat() as chat:
        old = await chat.native()
        joined = await _join(old, ALICE, "den")
        new = await chat.native()
        resumed = await new.call(
            "resume", {"sessionId": joined["sessionId"], "resumeToken": joined["resumeToken"]}
        )
        assert resumed["recovered"] is True
        assert await old.carrier.closed() == (CLOSE_TAKEN_OVER, "session taken over")
        await old.ended()
        other = await chat.native()
        await _join(other, BOB, "den")
        sent = await other.call("send_message", {"roomId": "den", "text": "still here?"})
        assert (await new.event("new_message")) == sent["message"]


async def test_a_large_room_gets_presence_as_diffs() -> None:
    """Past the session service's list limit, joins come without the member list and each
    gateway sends its members one ``presence_diff`` per interval instead."""
    async with InProcessChat(presence_list_max=2) as chat:
        watcher = await chat.native()
        await _join(watcher, ALICE, "big")
        await _join(await chat.native(), BOB, "big")
        assert (await watcher.event("user_joined", email=BOB))["users"] == [ALICE, BOB]
        await _join(await chat.native(), CAROL, "big")
        diff = await watcher.event("presence_diff")
        assert diff == {"roomId": "big", "joins": [CAROL], "leaves": [], "count": 3}


async def test_a_drain_closes_every_client_for_a_restart() -> None:
    """A drain stops intake and closes every client with 1012 (they resume elsewhere),
    spread over the period; it says how many it closed and refuses a second drain."""
    async with InProcessChat() as chat:
        peers = [await chat.native() for _ in range(3)]
        for i, peer in enumerate(peers):
            await _join(peer, f"u{i}@example.com", "hall")
        assert await chat.gateway.drain.drain(period_s=0.2) == 3
        for peer in peers:
            assert await peer.carrier.closed() == (CLOSE_SERVICE_RESTART, "service restart")


async def test_two_gateways_share_a_room_over_the_bus() -> None:
    """Members on two gateways of one room see each other's messages; each gateway holds
    one subscription to the room however many members it has."""
    async with InProcessChat() as chat:
        second = await chat.add_gateway(gateway_settings(instance_id="gw-2"))
        here = [await chat.native() for _ in range(2)]
        there = await chat.native(gateway=second)
        for peer, email in ((here[0], ALICE), (here[1], BOB), (there, CAROL)):
            await _join(peer, email, "shared")
        assert chat.bus.subscriptions("chat.room.shared.*") == 2
        sent = await there.call("send_message", {"roomId": "shared", "text": "across"})
        for peer in here:
            assert (await peer.event("new_message")) == sent["message"]


async def test_two_users_with_one_client_msg_id_each_get_their_own_message() -> None:
    """Two users whose clients both number their first message ``c-1`` in one room each get
    their own message stored, acked and delivered; a retry of either answers that user's
    own message and stores nothing; the room's history holds both."""
    async with InProcessChat() as chat:
        alice, bob = await chat.native(), await chat.socketio()
        await bob.connect()
        await _join(alice, ALICE, "lobby")
        await _join(bob, BOB, "lobby")
        sent: dict[str, Any] = {}
        for peer, text in ((alice, "alice's first"), (bob, "bob's first")):
            ack = await peer.call(
                "send_message", {"roomId": "lobby", "text": text, "clientMsgId": "c-1"}
            )
            assert ack["ok"] is True, ack
            sent[text] = ack["message"]
        mine, theirs = sent["alice's first"], sent["bob's first"]
        assert (mine["seq"], mine["email"], mine["clientMsgId"]) == (1, ALICE, "c-1")
        assert (theirs["seq"], theirs["email"], theirs["clientMsgId"]) == (2, BOB, "c-1")
        assert mine["id"] != theirs["id"]
        assert (await alice.event("new_message", seq=2)) == theirs
        assert (await bob.event("new_message", seq=2))[0] == theirs

        for peer, original in ((bob, theirs), (alice, mine)):
            retry = await peer.call(
                "send_message", {"roomId": "lobby", "text": "again", "clientMsgId": "c-1"}
            )
            assert retry == {"ok": True, "message": original}
        history = await alice.call("get_history", {"roomId": "lobby"})
        assert history["messages"] == [mine, theirs]
