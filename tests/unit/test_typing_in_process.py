"""Typing across two gateways, in process (tests/support/inprocess.py): the real handlers, the
gateways as their composition root wires them, one in-memory bus between them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from chat_common.subjects import room_typing
from chat_gateway.main import Gateway
from tests.support.inprocess import InProcessChat, NativePeer, SocketIOPeer, gateway_settings

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"
Peer = NativePeer | SocketIOPeer


@asynccontextmanager
async def _two_gateways(**settings: Any) -> AsyncIterator[tuple[InProcessChat, Gateway]]:
    values = {"typing_interval_ms": 20} | settings
    async with InProcessChat(gateway_settings(**values)) as chat:
        other = await chat.add_gateway(gateway_settings(instance_id="gw-other", **values))
        yield chat, other


async def _join(peer: Peer, email: str, room: str, *, connect: bool = True) -> None:
    if isinstance(peer, SocketIOPeer) and connect:
        await peer.connect()
    ack = await peer.call("join", {"email": email, "roomId": room})
    assert ack["ok"] is True, ack


async def _typing(peer: Peer, **fields: object) -> dict[str, Any]:
    """The next typing frame's payload (with these fields)."""
    got = await peer.event("typing", **fields)
    return got[0] if isinstance(peer, SocketIOPeer) else got  # type: ignore[no-any-return]


def _typing_frames(peer: Peer) -> list[dict[str, Any]]:
    """The typing frames received and not read yet."""
    out = []
    for frame in peer.unread():
        if isinstance(peer, SocketIOPeer) and frame.startswith(b'42["typing"'):
            out.append(json.loads(frame[2:])[1])
        elif isinstance(peer, NativePeer) and frame.startswith(b'{"type":"typing"'):
            out.append(json.loads(frame)["data"])
    return out


async def test_typing_reaches_the_other_gateway_and_stops() -> None:
    """A native typist on one gateway is shown to a Socket.IO member on the other, with the
    count, and cleared when they stop; the typist is never shown themselves, and a member of
    another room is told nothing."""
    async with _two_gateways() as (chat, other):
        alice = await chat.native()
        bob = await chat.socketio(gateway=other)
        carol = await chat.native(gateway=other)
        await _join(alice, ALICE, "lobby")
        await _join(bob, BOB, "lobby")
        await _join(carol, CAROL, "elsewhere")
        assert await alice.call("typing", {"roomId": "lobby", "typing": True}) == {"ok": True}
        assert await _typing(bob, users=[ALICE]) == {
            "roomId": "lobby",
            "users": [ALICE],
            "count": 1,
        }
        assert await alice.call("typing", {"roomId": "lobby", "typing": False}) == {"ok": True}
        assert await _typing(bob, users=[]) == {"roomId": "lobby", "users": [], "count": 0}
        await alice.call("get_members", {"roomId": "lobby"})  # a round trip after the frames
        assert _typing_frames(alice) == []  # their own view never changed
        assert _typing_frames(carol) == []
        assert [s for s, _ in chat.bus.published if s.endswith(".typing")] == [
            room_typing("lobby")
        ] * 2


async def test_a_message_a_leave_and_a_disconnect_clear_the_typist() -> None:
    """A typist is cleared when their message reaches the room, when they leave it, and when
    their connection goes away, with no stop from them."""
    async with _two_gateways() as (chat, other):
        alice, bob = await chat.socketio(), await chat.native(gateway=other)
        await _join(alice, ALICE, "lobby")
        await _join(bob, BOB, "lobby")
        alice.emit("typing", {"roomId": "lobby", "typing": True})  # no ack asked
        await _typing(bob, count=1)
        await alice.call("send_message", {"roomId": "lobby", "text": "hi"})
        await bob.event("new_message")
        assert await _typing(bob) == {"roomId": "lobby", "users": [], "count": 0}

        await alice.call("typing", {"roomId": "lobby", "typing": True})
        await _typing(bob, count=1)
        assert await alice.call("leave", {"roomId": "lobby"}) == {"ok": True}
        await _typing(bob, count=0)

        await _join(alice, ALICE, "lobby", connect=False)
        await alice.call("typing", {"roomId": "lobby", "typing": True})
        await _typing(bob, count=1)
        alice.carrier.hang_up(None)
        await alice.ended()
        await _typing(bob, count=0)


async def test_a_typist_not_renewed_expires_at_the_receivers() -> None:
    """With nothing said after typing:true (a vanished network), each receiving gateway
    clears the typist after its TTL on its own."""
    async with _two_gateways(typing_ttl_ms=60) as (chat, other):
        alice, bob = await chat.native(), await chat.native(gateway=other)
        await _join(alice, ALICE, "lobby")
        await _join(bob, BOB, "lobby")
        chat.bus.dropping[room_typing("lobby")] = 0
        await alice.call("typing", {"roomId": "lobby", "typing": True})
        await _typing(bob, count=1)
        await _typing(bob, count=0)
        await chat.until(lambda: len(other.hub.typing) == 0)  # the room's table goes too


async def test_many_typists_come_as_one_paced_frame_with_a_bounded_list() -> None:
    """Typists starting together: the first is sent at once, the rest wait for the
    interval and come in one frame of at most the configured names, and the count."""
    async with _two_gateways(typing_interval_ms=200, typing_names_max=2) as (chat, other):
        reader = await chat.native(gateway=other)
        await _join(reader, "reader@example.com", "big")
        typists = []
        for i in range(4):
            peer = await chat.native()
            await _join(peer, f"t{i}@example.com", "big")
            typists.append(peer)
        reader.unread()
        for peer in typists:
            await peer.call("typing", {"roomId": "big", "typing": True})
        first = await _typing(reader)
        assert first["count"] == 1
        last = await _typing(reader, count=4)
        assert last["users"] == ["t0@example.com", "t1@example.com"]
        assert _typing_frames(reader) == []  # the ones between went in that frame


async def test_a_member_joining_is_told_who_types() -> None:
    """A member whose join completes while someone types gets the typists of the room's last
    frame once (from a gateway that follows the room already: one that starts to follow it
    learns of a typist at their next renewal)."""
    async with _two_gateways() as (chat, other):
        alice, carol = await chat.native(), await chat.native(gateway=other)
        await _join(alice, ALICE, "lobby")
        await _join(carol, CAROL, "lobby")
        await alice.call("typing", {"roomId": "lobby", "typing": True})
        await _typing(carol, count=1)
        bob = await chat.socketio(gateway=other)
        await _join(bob, BOB, "lobby")
        assert await _typing(bob) == {"roomId": "lobby", "users": [ALICE], "count": 1}


async def test_hostile_typing_gets_clear_errors_and_changes_nothing() -> None:
    """Wrong types, a room not joined, and a flood past the user's bound are refused with
    INVALID_ARGUMENT, NOT_IN_ROOM and RATE_LIMITED; nothing of them reaches the bus, and the
    connection keeps working."""
    async with _two_gateways(typing_burst=2, typing_rate_per_s=0.5) as (chat, _other):
        alice = await chat.native()
        await _join(alice, ALICE, "lobby")
        for bad in ({"roomId": "lobby"}, {"roomId": "lobby", "typing": "yes"},
                    {"roomId": 7, "typing": True}, {"roomId": "a.b", "typing": True}, "x", None):  # fmt: skip
            answer = await alice.call("typing", bad)
            assert answer["error"]["code"] == "INVALID_ARGUMENT", (bad, answer)
        answer = await alice.call("typing", {"roomId": "nowhere", "typing": True})
        assert answer["error"]["code"] == "NOT_IN_ROOM"
        assert [s for s, _ in chat.bus.published if s.endswith(".typing")] == []
        codes = [
            (await alice.call("typing", {"roomId": "lobby", "typing": True})).get("error", {})
            for _ in range(4)
        ]
        assert [c.get("code") for c in codes] == [None, None, "RATE_LIMITED", "RATE_LIMITED"]
        assert all(c["retryAfterMs"] > 0 for c in codes[2:])
        assert len([s for s, _ in chat.bus.published if s.endswith(".typing")]) == 2
        alice.send({"type": "typing", "data": {"roomId": "lobby", "typing": True}})
        error = await alice.event("error")
        assert error["code"] == "RATE_LIMITED" and error["event"] == "typing"
        assert (await alice.call("send_message", {"roomId": "lobby", "text": "still here"}))["ok"]


async def test_a_malformed_signal_on_the_bus_is_dropped() -> None:
    """A typing subject message that is not a typing signal (or names another room) is
    dropped at the gateway; what follows is shown as usual."""
    async with _two_gateways() as (chat, other):
        alice, bob = await chat.native(), await chat.native(gateway=other)
        await _join(alice, ALICE, "lobby")
        await _join(bob, BOB, "lobby")
        await chat.bus.publish(room_typing("lobby"), b"{not json")
        forged = {"roomId": "other", "userId": "x", "email": "x@x.io", "typing": True,
                  "gateway": "gw"}  # fmt: skip
        await chat.bus.publish(room_typing("lobby"), json.dumps(forged).encode())
        await alice.call("typing", {"roomId": "lobby", "typing": True})
        assert await _typing(bob) == {"roomId": "lobby", "users": [ALICE], "count": 1}


async def test_typing_is_not_charged_to_the_users_shared_bucket() -> None:
    """Typing has its own per-user bound at the gateway: a user whose shared bucket holds
    three events can still type past that and then send their message."""
    settings = gateway_settings(user_lease=1)
    async with InProcessChat(settings, user_rate_per_s=0.001, user_rate_burst=3) as chat:
        alice = await chat.native()
        await _join(alice, ALICE, "lobby")
        for on in (True, False, True, False, True):
            assert await alice.call("typing", {"roomId": "lobby", "typing": on}) == {"ok": True}
        assert (await alice.call("send_message", {"roomId": "lobby", "text": "hi"}))["ok"]
