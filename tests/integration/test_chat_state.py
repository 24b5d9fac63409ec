"""Durable membership, read state and the inbox on a real stack (NATS, Redis, Postgres,
two of each service), with python-socketio as configured by default and the native
client side by side."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.conftest import MakeStack
from tests.support.clients import NativeClient, SioClient, unique_room
from tests.support.logs import stack_errors

pytestmark = pytest.mark.integration


def _email(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}@example.com"


async def _ok(client: SioClient | NativeClient, event: str, data: Any) -> dict[str, Any]:
    ack: dict[str, Any] = await client.call(event, data)
    assert ack["ok"] is True, ack
    return ack


TRANSPORTS: dict[str, list[str] | None] = {
    "websocket": ["websocket"],
    "default": None,  # python-socketio's own: the handshake over long-polling, then the upgrade
    "polling": ["polling"],  # every event and push over long-polling
}


@pytest.mark.parametrize("transports", list(TRANSPORTS))
async def test_every_new_event_across_two_gateways_and_both_protocols(
    make_stack: MakeStack, transports: str
) -> None:
    """A user on two devices (python-socketio on one gateway, native on the other):
    ``join`` makes a durable member, ``mark_read`` on one device reaches the other as
    ``read_state``, ``get_rooms`` lists the rooms with exact unread and follows the inbox
    (``inbox_update`` without joining), ``unsubscribe`` ends the membership on both
    (``membership``), and ``leave`` does not. python-socketio runs on WebSocket only, with
    its default transports (the handshake over long-polling, then the upgrade), and on
    long-polling only."""
    stack = await make_stack(gateways=2, sessions=2, histories=2)
    url_a, url_b = stack.gateway_urls
    alice, bob = _email("alice"), _email("bob")
    den, quiet = unique_room("den"), unique_room("quiet")
    phone = await SioClient(transports=TRANSPORTS[transports]).connect(url_a)
    # With the defaults, the client has upgraded by the time connect returns.
    assert phone.sio.transport() == ("polling" if transports == "polling" else "websocket")
    laptop = await NativeClient().connect(url_b)
    other = await NativeClient().connect(url_a)
    try:
        joined = await _ok(phone, "join", {"email": alice, "roomId": den})
        assert (joined["role"], joined["unread"]) == ("owner", 0)
        await _ok(laptop, "join", {"email": alice, "roomId": den})
        await _ok(phone, "join", {"email": alice, "roomId": quiet})
        await _ok(phone, "leave", {"roomId": quiet})  # still a member
        for room in (den, quiet):
            member = await _ok(other, "join", {"email": bob, "roomId": room})
            assert member["role"] == "member"
        sent = [
            await _ok(other, "send_message", {"roomId": den, "text": f"m{i}"}) for i in range(4)
        ]
        head = sent[-1]["message"]["seq"]

        inbox = await _ok(laptop, "get_rooms", {"limit": 10})
        by_room = {r["roomId"]: r for r in inbox["rooms"]}
        assert by_room[den]["unread"] == 4 and by_room[den]["lastMessage"]["text"] == "m3"
        assert by_room[quiet]["unread"] == 0 and inbox["total"] == 2

        marked = await _ok(phone, "mark_read", {"roomId": den, "seq": head})
        assert marked["unread"] == 0
        await laptop.wait_for(
            lambda ev: any(n == "read_state" and d["roomId"] == den and d["unread"] == 0
                           for n, d in ev)
        )  # fmt: skip

        note = await _ok(other, "send_message", {"roomId": quiet, "text": "psst"})
        seq = note["message"]["seq"]
        await laptop.wait_for(
            lambda ev: any(n == "inbox_update" and d["roomId"] == quiet and d["lastSeq"] == seq
                           and d["unread"] == 1 for n, d in ev)
        )  # fmt: skip
        assert not [d for d in phone.of("new_message") if d["roomId"] == quiet]

        gone = await _ok(laptop, "unsubscribe", {"roomId": den})
        assert gone["removed"] is True
        await phone.wait_for(
            lambda ev: any(n == "membership" and d["roomId"] == den and d["member"] is False
                           for n, d in ev)
        )  # fmt: skip
        refused = await phone.call("send_message", {"roomId": den, "text": "still?"})
        assert refused["error"]["code"] == "NOT_IN_ROOM"
        foreign = await phone.call("mark_read", {"roomId": den, "seq": 1})
        assert foreign["error"]["code"] == "NOT_MEMBER"
        rooms = await _ok(phone, "get_rooms", {"follow": False})
        assert [r["roomId"] for r in rooms["rooms"]] == [quiet]
    finally:
        for client in (phone, laptop, other):
            await client.close()
    assert stack_errors(stack.services) == {}
