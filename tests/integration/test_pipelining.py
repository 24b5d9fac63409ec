"""Pipelined connections: a sender's next event does not wait for its previous commit, yet
its messages get seqs in the order sent, and its acks come back in that order.

A connection's ``send_message`` events run concurrently and leave for history together in
batch requests; any other event waits for those before it.
"""

from __future__ import annotations

import pytest

from tests.conftest import MakeStack
from tests.support.clients import NativeClient, unique_room
from tests.support.http import metric

pytestmark = pytest.mark.integration

SENDS = 100


def _send(room: str, i: int) -> tuple[str, dict[str, object]]:
    return "send_message", {"roomId": room, "text": f"m{i}", "clientMsgId": f"c{i}"}


async def test_a_pipelined_sender_keeps_its_order_and_shares_commits(
    make_stack: MakeStack,
) -> None:
    """A hundred sends written back to back, no ack awaited: every one is acked in the
    order sent, with increasing seqs; a reader sees them in that order; and they took far
    fewer commits than messages (the sender did not wait for each commit before the next)."""
    stack = await make_stack()
    history = f"http://127.0.0.1:{stack.of_kind('history')[0].http_port}/metrics"
    room = unique_room()
    sender, reader = NativeClient(), NativeClient()
    await sender.connect(stack.client_url)
    await reader.connect(stack.client_url)
    try:
        assert (await sender.call("join", {"email": "bot@example.com", "roomId": room}))["ok"]
        assert (await reader.call("join", {"email": "ann@example.com", "roomId": room}))["ok"]
        commits_before = await metric(history, "chat_history_batch_size_count")
        ids, acks = await sender.pipeline([_send(room, i) for i in range(SENDS)])
        received = await reader.wait_messages(room, SENDS)
        commits = await metric(history, "chat_history_batch_size_count") - commits_before
    finally:
        await sender.close()
        await reader.close()
    assert all(a["ok"] for a in acks), [a for a in acks if not a["ok"]][:3]
    assert [a["message"]["text"] for a in acks] == [f"m{i}" for i in range(SENDS)]
    seqs = [a["message"]["seq"] for a in acks]
    assert seqs == list(range(seqs[0], seqs[0] + SENDS))
    assert [i for i in sender.ack_order if i in set(ids)] == ids
    assert [m["text"] for m in received] == [f"m{i}" for i in range(SENDS)]
    assert commits <= SENDS / 4, commits


async def test_errors_keep_their_place_and_other_events_wait_their_turn(
    make_stack: MakeStack,
) -> None:
    """A refused send among good ones is answered in its place and takes no seq; a leave
    sent right behind a burst of sends waits for them (they all land, in the room they
    were sent to), and a send after the leave is NOT_IN_ROOM."""
    stack = await make_stack()
    room = unique_room()
    sender = await NativeClient().connect(stack.client_url)
    try:
        assert (await sender.call("join", {"email": "bot@example.com", "roomId": room}))["ok"]
        calls = [_send(room, i) for i in range(10)]
        calls[4] = ("send_message", {"roomId": room, "text": ""})
        calls += [("leave", {"roomId": room}), _send(room, 99)]
        ids, acks = await sender.pipeline(calls)
        again = await sender.call("join", {"email": "bot@example.com", "roomId": room})
    finally:
        await sender.close()
    assert [i for i in sender.ack_order if i in set(ids)] == ids
    assert acks[4]["error"]["code"] == "INVALID_ARGUMENT"
    sent = [a for i, a in enumerate(acks[:10]) if i != 4]
    assert all(a["ok"] for a in sent)
    seqs = [a["message"]["seq"] for a in sent]
    assert seqs == list(range(seqs[0], seqs[0] + 9))
    assert acks[10] == {"ok": True}
    assert acks[11]["error"]["code"] == "NOT_IN_ROOM"
    assert [m["text"] for m in again["history"]][-9:] == [a["message"]["text"] for a in sent]
