"""Durable membership, read state and the inbox, in process: the real gateway, session
and history handlers on the in-memory stores (tests/support/inprocess.py)."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

from chat_common.subjects import user_events
from tests.support.inprocess import InProcessChat, NativePeer, SocketIOPeer
from tests.support.inprocess import ok as _ok

ALICE, BOB = "alice@example.com", "bob@example.com"
Peer = NativePeer | SocketIOPeer


async def _send(peer: Peer, room: str, n: int) -> int:
    """``n`` messages to ``room``; the last seq."""
    acks = await asyncio.gather(
        *(peer.call("send_message", {"roomId": room, "text": f"m{i}"}) for i in range(n))
    )
    return max(a["message"]["seq"] for a in acks)


async def _post(peer: Peer, room: str) -> int:
    """One message to ``room`` from a connection that joins and leaves it (a connection
    holds at most 100 rooms live); its seq."""
    await _ok(peer, "join", {"email": BOB, "roomId": room})
    seq = await _send(peer, room, 1)
    await _ok(peer, "leave", {"roomId": room})
    return seq


async def _sio(chat: InProcessChat, **kw: Any) -> SocketIOPeer:
    peer = await chat.socketio(**kw)
    await peer.connect()
    return peer


async def test_a_mark_on_one_device_reaches_the_other_on_another_gateway() -> None:
    """Two devices of one user (Socket.IO and native, on two gateways): a ``mark_read`` to
    the head on one gives the other ``read_state {unread: 0}``."""
    async with InProcessChat() as chat:
        other_gw = await chat.add_gateway(chat.settings.model_copy(update={"instance_id": "gw-2"}))
        phone = await _sio(chat)
        laptop = await chat.native(gateway=other_gw)
        bob = await chat.native()
        for peer, email in ((phone, ALICE), (laptop, ALICE), (bob, BOB)):
            await _ok(peer, "join", {"email": email, "roomId": "den"})
        head = await _send(bob, "den", 5)
        ack = await _ok(phone, "mark_read", {"roomId": "den", "seq": head})
        assert (ack["readSeq"], ack["unread"], ack["lastSeq"]) == (head, 0, head)
        state = await laptop.event("read_state", roomId="den", readSeq=head)
        assert state["unread"] == 0 and state["userSeq"] >= 1


async def test_unread_is_exact_for_a_user_who_was_away() -> None:
    """A member with no connection at all: the messages sent meanwhile are all unread on
    return, in the inbox and the join ack; a mark at head-17 leaves exactly 17."""
    async with InProcessChat() as chat:
        alice = await chat.native()
        await _ok(alice, "join", {"email": ALICE, "roomId": "away"})
        alice.carrier.hang_up(1000)  # a goodbye: the session ends, the membership stays
        await alice.ended()
        bob = await chat.native()
        await _ok(bob, "join", {"email": BOB, "roomId": "away"})
        head = await _send(bob, "away", 120)
        back = await chat.native()
        inbox = await _ok(back, "get_rooms", {"email": ALICE})
        [room] = inbox["rooms"]
        assert (room["roomId"], room["unread"], room["readSeq"]) == ("away", 120, 0)
        assert room["lastMessage"]["seq"] == head and inbox["next"] is None
        joined = await _ok(back, "join", {"email": ALICE, "roomId": "away"})
        assert (joined["unread"], joined["role"]) == (120, "owner")
        ack = await _ok(back, "mark_read", {"roomId": "away", "seq": head - 17})
        assert ack["unread"] == 17
        again = await _ok(back, "get_rooms", {"follow": False})
        assert again["rooms"][0]["unread"] == 17


async def test_interleaved_marks_from_five_devices_end_at_the_largest() -> None:
    """Five devices sending 1,000 interleaved marks of random seqs: the watermark ends at the largest sent, and no
    device ever sees its unread grow (read_state events only move forward)."""
    async with InProcessChat() as chat:
        bob = await chat.native()
        await _ok(bob, "join", {"email": BOB, "roomId": "five"})
        devices = [await chat.native() for _ in range(5)]
        for device in devices:
            await _ok(device, "join", {"email": ALICE, "roomId": "five"})
        head = await _send(bob, "five", 300)
        rng = random.Random(26)
        marks = [[rng.randint(0, head) for _ in range(200)] for _ in devices]

        def acks(device: NativePeer) -> list[dict[str, Any]]:
            sent = (json.loads(f) for f in device.carrier.sent if f.startswith(b'{"type":"ack"'))
            return [a["data"] for a in sent if a["id"] >= 1000]

        for n in range(200):  # all at once, interleaved across the devices
            for device, seqs in zip(devices, marks, strict=True):
                data = {"roomId": "five", "seq": seqs[n]}
                device.send({"type": "mark_read", "id": 1000 + n, "data": data})
        for device in devices:
            await device.carrier.wait_for(lambda d=device: len(acks(d)) >= 200)
        results = [[a["readSeq"] for a in acks(d)] for d in devices]
        for got in results:
            assert got == sorted(got), "a device's acks never show the watermark going back"
        largest = max(max(s) for s in marks)
        assert max(max(r) for r in results) == largest
        final = await _ok(devices[0], "mark_read", {"roomId": "five", "seq": 0})
        assert final["readSeq"] == largest
        for device in devices:
            await device.event("read_state", readSeq=largest)
            states = [
                json.loads(f)["data"]
                for f in device.carrier.sent
                if f.startswith(b'{"type":"read_state"')
            ]
            read = [s["readSeq"] for s in states]
            unread = [s["unread"] for s in states]
            assert read == sorted(read) and unread == sorted(unread, reverse=True)
            assert read[-1] == largest
        writes = chat.gateway.marks.writes
        assert writes < 5 * 200  # coalesced: fewer writes than marks


async def test_the_inbox_pages_every_room_once_while_messages_arrive() -> None:
    """120 rooms in pages of 50 while messages land in rooms already listed and not yet
    listed: every room exactly once; a message in the least recent room then moves it to
    the top on both devices, live."""
    async with InProcessChat() as chat:
        bob = await chat.native()
        phone, laptop = await chat.native(), await _sio(chat)
        rooms = [f"r{i:03d}" for i in range(120)]
        for room in rooms:
            await _ok(phone, "join", {"email": ALICE, "roomId": room})
            await _ok(phone, "leave", {"roomId": room})  # live no more; still a member
            await _post(bob, room)
        listed: list[str] = []
        page = await _ok(laptop, "get_rooms", {"email": ALICE, "limit": 50})
        await _ok(phone, "get_rooms", {"limit": 1})
        while True:
            listed += [r["roomId"] for r in page["rooms"]]
            await _post(bob, rooms[len(listed) % 120])  # one listed or about to be
            await _post(bob, rooms[-1 - len(listed) % 120])
            if page["next"] is None:
                break
            page = await _ok(laptop, "get_rooms", {"after": page["next"], "limit": 50})
        assert sorted(listed) == rooms and page["total"] == 120

        oldest = (await _ok(laptop, "get_rooms", {"limit": 200, "follow": False}))["rooms"][-1]
        seq = await _post(bob, oldest["roomId"])
        for device in (phone, laptop):
            update = await _update(device, oldest["roomId"], seq)
            assert update["unread"] == update["lastSeq"] - update["readSeq"] == oldest["unread"] + 1
        top = (await _ok(laptop, "get_rooms", {"limit": 1, "follow": False}))["rooms"][0]
        assert top["roomId"] == oldest["roomId"]


async def _update(device: Peer, room: str, seq: int) -> dict[str, Any]:
    got = await device.event("inbox_update", roomId=room, lastSeq=seq)
    return got[0] if isinstance(got, list) else got


async def test_the_senders_own_message_is_read_for_them() -> None:
    """After a member sends, their inbox shows the room read up to their message."""
    async with InProcessChat() as chat:
        alice, bob = await chat.native(), await chat.native()
        await _ok(alice, "join", {"email": ALICE, "roomId": "own"})
        await _ok(bob, "join", {"email": BOB, "roomId": "own"})
        await _send(bob, "own", 3)
        await _ok(alice, "get_rooms", {})
        seq = await _send(alice, "own", 1)
        update = await _update(alice, "own", seq)
        assert (update["readSeq"], update["unread"]) == (seq, 0)
        assert update["lastMessage"]["email"] == ALICE


async def test_leave_keeps_the_membership_and_unsubscribe_ends_it_everywhere() -> None:
    """``leave`` stops the live stream on one connection but the room stays the user's;
    ``unsubscribe`` ends the membership: the user's other connection leaves the room and
    hears ``membership {member: false}``, and the inbox no longer lists it."""
    async with InProcessChat() as chat:
        one, two = await chat.native(), await chat.native()
        await _ok(one, "join", {"email": ALICE, "roomId": "keep"})
        await _ok(two, "join", {"email": ALICE, "roomId": "keep"})
        await _ok(one, "leave", {"roomId": "keep"})
        assert [r["roomId"] for r in (await _ok(one, "get_rooms", {}))["rooms"]] == ["keep"]
        gone = await _ok(one, "unsubscribe", {"roomId": "keep"})
        assert gone["removed"] is True
        await two.event("membership", roomId="keep", member=False)
        refused = await two.call("send_message", {"roomId": "keep", "text": "still here?"})
        assert refused["error"]["code"] == "NOT_IN_ROOM"
        assert (await _ok(one, "get_rooms", {"follow": False}))["rooms"] == []
        again = await _ok(one, "unsubscribe", {"roomId": "keep"})
        assert again["removed"] is False


async def test_bad_marks_get_clear_errors() -> None:
    """Foreign rooms, seqs beyond the head, negative, huge and mistyped seqs, unknown
    users and bad cursors are refused with stable codes; the connection stays up."""
    async with InProcessChat() as chat:
        alice = await chat.native()
        nobody = await chat.native()
        assert (await nobody.call("mark_read", {"roomId": "x", "seq": 1}))["error"][
            "code"
        ] == "INVALID_ARGUMENT"
        await _ok(alice, "join", {"email": ALICE, "roomId": "mine"})
        await _send(alice, "mine", 2)
        cases = {
            "NOT_MEMBER": {"roomId": "theirs", "seq": 1},
            "INVALID_ARGUMENT": {"roomId": "mine", "seq": 3},
        }
        for code, data in cases.items():
            assert (await alice.call("mark_read", data))["error"]["code"] == code, data
        for bad in (-1, 2**63, "1", None, 1.5, [1]):
            reply = await alice.call("mark_read", {"roomId": "mine", "seq": bad})
            assert reply["error"]["code"] == "INVALID_ARGUMENT", bad
        for bad_room in ("a.b", "*", "x" * 65, 7):
            reply = await alice.call("mark_read", {"roomId": bad_room, "seq": 1})
            assert reply["error"]["code"] == "INVALID_ARGUMENT", bad_room
        for data in ({"after": "nope"}, {"limit": 0}, {"limit": 201}, {"after": 5}):
            reply = await alice.call("get_rooms", data)
            assert reply["error"]["code"] == "INVALID_ARGUMENT", data
        mismatch = await alice.call("get_rooms", {"email": BOB})
        assert mismatch["error"]["code"] == "IDENTITY_MISMATCH"
        assert (await _ok(alice, "mark_read", {"roomId": "mine", "seq": 2}))["unread"] == 0


async def test_a_resumed_session_gets_the_read_state_of_its_rooms() -> None:
    """Read state moved while a device was away reaches it on resume: in the native resume
    ack (``readState``) and, for Socket.IO recovery, as ``read_state`` events."""
    async with InProcessChat() as chat:
        native, sio, bob = await chat.native(), await _sio(chat), await chat.native()
        joined = await _ok(native, "join", {"email": ALICE, "roomId": "back"})
        await _ok(sio, "join", {"email": ALICE, "roomId": "back"})
        await _ok(bob, "join", {"email": BOB, "roomId": "back"})
        head = await _send(bob, "back", 6)
        await native.event("new_message", seq=head)
        (_message, offset) = await sio.event("new_message", seq=head)
        pid = json.loads(sio.carrier.sent[1][2:])["pid"]
        for peer in (native, sio):
            peer.carrier.hang_up(None)
            await peer.ended()
        phone = await chat.native()
        await _ok(phone, "get_rooms", {"email": ALICE, "follow": False})
        await _ok(phone, "mark_read", {"roomId": "back", "seq": head - 2})

        resumed = await _ok(
            await chat.native(),
            "resume",
            {"sessionId": joined["sessionId"], "resumeToken": joined["resumeToken"]},
        )
        assert resumed["readState"] == [
            {"roomId": "back", "readSeq": head - 2, "lastSeq": head, "unread": 2}
        ]
        back = await chat.socketio()
        assert (await back.connect({"pid": pid, "offset": offset}))["pid"] == pid
        [state] = await back.event("read_state", roomId="back")
        assert (state["readSeq"], state["unread"]) == (head - 2, 2)


async def test_a_resumed_connections_watermark_never_goes_back() -> None:
    """The resume's snapshot and the stream's events agree: two ``read_state`` events lost
    on the bus (a hole this gateway cannot see yet) are filled before the snapshot is
    written, so the filled events, older, do not follow it; every ``read_state`` the
    resumed connection gets is at or past the one before."""
    async with InProcessChat() as chat:
        phone, sio, bob = await chat.native(), await _sio(chat), await chat.native()
        await _ok(phone, "get_rooms", {"email": ALICE, "follow": False})  # the user stream
        for peer, email in ((phone, ALICE), (sio, ALICE), (bob, BOB)):
            await _ok(peer, "join", {"email": email, "roomId": "late"})
        head = await _send(bob, "late", 6)
        (_message, offset) = await sio.event("new_message", seq=head)
        pid = json.loads(sio.carrier.sent[1][2:])["pid"]
        sio.carrier.hang_up(None)
        await sio.ended()
        chat.bus.dropping[user_events(ALICE)] = 2
        for seq in (head - 4, head - 2):
            await _ok(phone, "mark_read", {"roomId": "late", "seq": seq})

        back = await chat.socketio()
        assert (await back.connect({"pid": pid, "offset": offset}))["pid"] == pid
        await _ok(phone, "mark_read", {"roomId": "late", "seq": head})
        await back.event("read_state", roomId="late", readSeq=head)
        seen = [
            json.loads(f[2:])[1]["readSeq"]
            for f in back.carrier.sent
            if f.startswith(b'42["read_state"')
        ]
        assert seen == sorted(seen) and seen[-1] == head and head - 2 in seen, seen


async def test_marks_sent_without_waiting_coalesce_and_answer_in_order() -> None:
    """A client marking on every message without waiting for the acks: its marks run
    together (pipelined) and ride few writes, and the acks come back in the order sent,
    each with a watermark at least its own mark."""
    async with InProcessChat() as chat:
        alice, bob = await chat.native(), await chat.native()
        await _ok(alice, "join", {"email": ALICE, "roomId": "fast"})
        await _ok(bob, "join", {"email": BOB, "roomId": "fast"})
        head = await _send(bob, "fast", 200)
        before = chat.gateway.marks.writes
        for seq in range(1, head + 1):
            alice.send(
                {"type": "mark_read", "id": 1000 + seq, "data": {"roomId": "fast", "seq": seq}}
            )
        acks = [
            json.loads(
                await alice.frame(lambda f, n=n: f.startswith(b'{"type":"ack","id":%d,' % n))
            )
            for n in range(1001, 1001 + head)
        ]
        assert [a["data"]["readSeq"] >= seq for seq, a in enumerate(acks, 1)] == [True] * head
        read = [a["data"]["readSeq"] for a in acks]
        assert read == sorted(read), "an ack never shows the watermark going back"
        sent = [json.loads(f) for f in alice.carrier.sent if f.startswith(b'{"type":"ack"')]
        order = [a["id"] for a in sent if a["id"] > 1000]
        assert order == list(range(1001, 1001 + head))
        writes = chat.gateway.marks.writes - before
        assert 1 <= writes < head, writes  # one by one, it would be one write per mark
