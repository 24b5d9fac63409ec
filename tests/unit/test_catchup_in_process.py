"""Readers that fall behind, in process: past the soft limit they are caught up from
history (exactly once, in order, offsets and seqs right) instead of cut; only one that never
drains, or passes the hard cap, is closed with 4008 (tests/support/inprocess.py)."""

from __future__ import annotations

import json
from typing import Any

from chat_gateway.closecodes import CLOSE_SLOW_CONSUMER
from chat_gateway.metrics import CATCHUP_PAGES, SLOW_CONSUMER_CUTS
from tests.support.inprocess import InProcessChat, NativePeer, SocketIOPeer, gateway_settings

SETTINGS = gateway_settings(
    catchup_soft_bytes=4096, catchup_interval_s=0.02, catchup_deadline_s=0.5
)
TEXT = "catch me up " * 10
BEHIND = 4096 * 2
"""Bytes a reader that stopped reading has not taken: past the soft limit."""


async def _join(peer: NativePeer | SocketIOPeer, email: str, room: str) -> None:
    ack = await peer.call("join", {"email": email, "roomId": room})
    assert ack["ok"] is True, ack


async def _send(sender: NativePeer, room: str, first: int, count: int) -> None:
    for n in range(first, first + count):
        ack = await sender.call("send_message", {"roomId": room, "text": f"{n} {TEXT}"})
        assert ack["ok"] is True and ack["message"]["seq"] == n, ack


def _messages(peer: NativePeer | SocketIOPeer) -> list[tuple[int, str, Any]]:
    """(seq, text, offset) of every new_message written to ``peer`` so far, in order."""
    out = []
    for frame in peer.carrier.sent:
        if frame.startswith(b'{"type":"new_message"'):
            data = json.loads(frame)["data"]
            out.append((data["seq"], data["text"], None))
        elif frame.startswith(b'42["new_message"'):
            _, data, offset = json.loads(frame[2:])
            out.append((data["seq"], data["text"], offset))
    return out


async def _catch_up(protocol: str) -> None:
    async with InProcessChat(SETTINGS) as chat:
        if protocol == "native":
            reader: NativePeer | SocketIOPeer = await chat.native()
        else:
            reader = await chat.socketio()
            await reader.connect()
        sender = await chat.native()
        await _join(reader, "reader@example.com", "busy")
        await _join(sender, "sender@example.com", "busy")
        await reader.event("user_joined", email="sender@example.com")
        await _send(sender, "busy", 1, 3)
        await reader.carrier.wait_for(lambda: len(_messages(reader)) == 3)
        pages = CATCHUP_PAGES._value.get()

        reader.carrier.backlog = BEHIND  # it stops reading
        await _send(sender, "busy", 4, 40)
        assert len(_messages(reader)) == 3, "no live room frame past the soft limit"
        assert len(chat.gateway.laggards) == 1
        assert CATCHUP_PAGES._value.get() == pages

        reader.carrier.backlog = 0  # it drains: pages from history, live ones meanwhile
        await _send(sender, "busy", 44, 20)
        await reader.carrier.wait_for(lambda: len(_messages(reader)) >= 63)
        await chat.until(lambda: len(chat.gateway.laggards) == 0)
        await _send(sender, "busy", 64, 1)  # live again
        await reader.carrier.wait_for(lambda: len(_messages(reader)) >= 64)

        got = _messages(reader)
        assert [seq for seq, _, _ in got] == list(range(1, 65)), "each once, in order"
        assert all(text.startswith(f"{seq} ") for seq, text, _ in got)
        if protocol == "socketio":
            assert [offset for _, _, offset in got] == [f"busy:{n}" for n in range(1, 65)]
        assert CATCHUP_PAGES._value.get() - pages >= 2  # paged, not all at once
        assert not reader.carrier.closed_by_us


async def test_a_native_reader_past_its_soft_limit_is_caught_up_not_cut() -> None:
    """A native reader that stops reading gets no live room frame past the soft limit;
    once it drains it is written the rest from history, page by page, then live again:
    every seq once, in order, never cut."""
    await _catch_up("native")


async def test_a_socketio_reader_is_caught_up_with_its_offsets_right() -> None:
    """The same for Socket.IO: each caught-up message carries the offset of its own seq,
    so connection state recovery resumes from exactly what was written."""
    await _catch_up("socketio")


async def test_a_reader_that_never_drains_is_cut_at_the_deadline() -> None:
    """A reader behind whose queue does not shrink for GATEWAY_CATCHUP_DEADLINE_S is
    closed with 4008 (counted); the room goes on for the others."""
    async with InProcessChat(SETTINGS) as chat:
        slow, fast, sender = await chat.native(), await chat.native(), await chat.native()
        for peer, email in ((slow, "a@example.com"), (fast, "b@example.com"),
                            (sender, "c@example.com")):  # fmt: skip
            await _join(peer, email, "busy")
        await slow.event("user_joined", email="c@example.com")
        cuts = SLOW_CONSUMER_CUTS._value.get()
        slow.carrier.backlog = BEHIND
        await _send(sender, "busy", 1, 2)
        assert await slow.carrier.closed() == (CLOSE_SLOW_CONSUMER, "slow consumer")
        assert SLOW_CONSUMER_CUTS._value.get() == cuts + 1
        assert (await fast.event("new_message", seq=2))["seq"] == 2
        await chat.until(lambda: len(chat.gateway.laggards) == 0)


async def test_the_hard_cap_still_cuts_at_once() -> None:
    """Whatever is queued (an ack included), passing GATEWAY_SLOW_CONSUMER_BYTES closes the
    connection with 4008 at that write, without waiting for the deadline."""
    async with InProcessChat(SETTINGS) as chat:
        slow = await chat.native()
        await _join(slow, "a@example.com", "busy")
        cuts = SLOW_CONSUMER_CUTS._value.get()
        slow.carrier.backlog = slow.carrier.write_cap + 1
        slow.send({"type": "get_history", "id": 99, "data": {"roomId": "busy"}})
        assert await slow.carrier.closed() == (CLOSE_SLOW_CONSUMER, "slow consumer")
        assert SLOW_CONSUMER_CUTS._value.get() == cuts + 1


async def test_presence_is_held_past_half_the_soft_limit_and_sent_once_drained() -> None:
    """Past half the soft limit a reader's presence events are coalesced (the latest per
    room) and written once it drains, while its room messages still flow."""
    async with InProcessChat(SETTINGS) as chat:
        reader = await chat.native()
        await _join(reader, "r@example.com", "hall")
        reader.carrier.backlog = 4096 * 3 // 4  # past half, below the soft limit
        for email in ("x@example.com", "y@example.com"):
            await _join(await chat.native(), email, "hall")
        sender = await chat.native()
        await _join(sender, "z@example.com", "hall")
        await _send(sender, "hall", 1, 1)
        await reader.event("new_message", seq=1)
        joined = [f for f in reader.carrier.sent if b'"user_joined"' in f]
        assert joined == []
        reader.carrier.backlog = 0
        last = await reader.event("user_joined")
        assert last["email"] == "z@example.com" and last["count"] == 4
        await chat.until(lambda: len(chat.gateway.laggards) == 0)
        assert [f for f in reader.carrier.sent if b'"user_joined"' in f] != []
        assert len([f for f in reader.carrier.sent if b'"user_joined"' in f]) == 1
