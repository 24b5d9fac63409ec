"""End to end through gateway, session and history, over both client protocols."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.support.clients import NativeClient, SioClient, unique_room

pytestmark = pytest.mark.integration

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


async def _sio(url: str) -> SioClient:
    return await SioClient().connect(url)


async def _native(url: str) -> NativeClient:
    return await NativeClient().connect(url)


CONNECTORS = {"socketio": _sio, "native": _native}


@pytest.mark.parametrize(
    "proto_a,proto_b", [("socketio", "socketio"), ("native", "native"), ("socketio", "native")]
)
async def test_two_clients_see_each_others_messages_and_presence(
    gateway_url: str, proto_a: str, proto_b: str
) -> None:
    """Two clients in a room get each other's messages in seq order and each other's joins."""
    room = unique_room()
    a = await CONNECTORS[proto_a](gateway_url)
    b = await CONNECTORS[proto_b](gateway_url)
    try:
        joined_a = await a.call("join", {"email": "ann@example.com", "roomId": room})
        assert joined_a["ok"] is True
        assert joined_a["roomId"] == room
        assert joined_a["users"] == ["ann@example.com"]
        assert joined_a["history"] == []
        assert isinstance(joined_a["sessionId"], str) and joined_a["sessionId"]
        await a.wait_for(
            lambda ev: (
                (
                    "user_joined",
                    {
                        "roomId": room,
                        "email": "ann@example.com",
                        "count": 1,
                        "users": ["ann@example.com"],
                    },
                )
                in ev
            )
        )

        joined_b = await b.call("join", {"email": "bob@example.com", "roomId": room})
        assert joined_b["users"] == ["ann@example.com", "bob@example.com"]
        expected = {
            "roomId": room,
            "email": "bob@example.com",
            "count": 2,
            "users": ["ann@example.com", "bob@example.com"],
        }
        await a.wait_for(lambda ev: ("user_joined", expected) in ev)
        await b.wait_for(lambda ev: ("user_joined", expected) in ev)

        sent = await a.call("send_message", {"roomId": room, "text": "hello bob"})
        assert sent["ok"] is True
        message = sent["message"]
        assert message["seq"] == 1
        assert message["email"] == "ann@example.com"
        assert message["text"] == "hello bob"
        assert message["clientMsgId"] is None
        assert message["roomId"] == room
        assert TS.match(message["ts"])
        reply = await b.call(
            "send_message", {"roomId": room, "text": "hi ann", "clientMsgId": "b-1"}
        )
        assert reply["message"]["seq"] == 2
        assert reply["message"]["clientMsgId"] == "b-1"

        for client in (a, b):
            got = await client.wait_messages(room, 2)
            assert [m["seq"] for m in got] == [1, 2]
            assert got[0] == message
            assert got[1] == reply["message"]
    finally:
        await a.close()
        await b.close()


async def test_history_pages_backwards_by_before_seq(gateway_url: str) -> None:
    """get_history returns ascending pages strictly older than beforeSeq, index-backed by seq."""
    room = unique_room()
    c = await _sio(gateway_url)
    try:
        await c.call("join", {"email": "pager@example.com", "roomId": room})
        for i in range(1, 8):
            await c.call("send_message", {"roomId": room, "text": f"m{i}"})
        latest = await c.call("get_history", {"roomId": room, "limit": 3})
        assert [m["seq"] for m in latest["messages"]] == [5, 6, 7]
        older = await c.call("get_history", {"roomId": room, "beforeSeq": 5, "limit": 3})
        assert [m["text"] for m in older["messages"]] == ["m2", "m3", "m4"]
        oldest = await c.call("get_history", {"roomId": room, "beforeSeq": 2, "limit": 3})
        assert [m["seq"] for m in oldest["messages"]] == [1]
        none = await c.call("get_history", {"roomId": room, "beforeSeq": 1})
        assert none == {"ok": True, "messages": [], "lastSeq": 7}
        default = await c.call("get_history", {"roomId": room})
        assert len(default["messages"]) == 7

        rejoin = await _sio(gateway_url)
        try:
            joined = await rejoin.call("join", {"email": "late@example.com", "roomId": room})
            assert [m["seq"] for m in joined["history"]] == list(range(1, 8))
        finally:
            await rejoin.close()
    finally:
        await c.close()


async def test_join_history_holds_the_last_fifty(gateway_url: str) -> None:
    """A join returns at most the last 50 messages, ascending."""
    room = unique_room()
    c = await _native(gateway_url)
    try:
        await c.call("join", {"email": "many@example.com", "roomId": room})
        for i in range(55):
            await c.call("send_message", {"roomId": room, "text": f"n{i}"})
        other = await _native(gateway_url)
        try:
            joined = await other.call("join", {"email": "other@example.com", "roomId": room})
            assert [m["seq"] for m in joined["history"]] == list(range(6, 56))
        finally:
            await other.close()
    finally:
        await c.close()


async def test_leave_and_disconnect_announce_user_left(gateway_url: str) -> None:
    """user_left reaches the remaining members on leave and on disconnect, not the leaver."""
    room = unique_room()
    a, b, c = await _sio(gateway_url), await _native(gateway_url), await _sio(gateway_url)
    try:
        await a.call("join", {"email": "a@example.com", "roomId": room})
        await b.call("join", {"email": "b@example.com", "roomId": room})
        await c.call("join", {"email": "c@example.com", "roomId": room})
        assert await b.call("leave", {"roomId": room}) == {"ok": True}
        left_b = {
            "roomId": room,
            "email": "b@example.com",
            "count": 2,
            "users": ["a@example.com", "c@example.com"],
        }
        await a.wait_for(lambda ev: ("user_left", left_b) in ev)
        await c.wait_for(lambda ev: ("user_left", left_b) in ev)
        await c.close()
        left_c = {"roomId": room, "email": "c@example.com", "count": 1, "users": ["a@example.com"]}
        await a.wait_for(lambda ev: ("user_left", left_c) in ev)
        after_leave = await b.call("send_message", {"roomId": room, "text": "ghost"})
        assert after_leave["error"]["code"] == "NOT_IN_ROOM"
        assert b.of("user_left") == []
    finally:
        await a.close()
        await b.close()


async def test_one_connection_joins_several_rooms_with_one_email(gateway_url: str) -> None:
    """A connection may join several rooms; its email is fixed by the first join."""
    r1, r2 = unique_room(), unique_room()
    c = await _sio(gateway_url)
    try:
        assert (await c.call("join", {"email": "multi@example.com", "roomId": r1}))["ok"]
        assert (await c.call("join", {"email": "multi@example.com", "roomId": r2}))["ok"]
        refused = await c.call("join", {"email": "else@example.com", "roomId": unique_room()})
        assert refused == {
            "ok": False,
            "error": {"code": "IDENTITY_MISMATCH", "message": refused["error"]["message"]},
        }
        await c.call("send_message", {"roomId": r2, "text": "in r2"})
        got = await c.wait_messages(r2, 1)
        assert got[0]["text"] == "in r2"
        assert [d for d in c.of("new_message") if d["roomId"] == r1] == []
    finally:
        await c.close()


def _error(reply: dict[str, Any]) -> str:
    assert reply["ok"] is False, reply
    assert set(reply["error"]) == {"code", "message"}
    return str(reply["error"]["code"])


@pytest.mark.parametrize("proto", ["socketio", "native"])
async def test_error_codes_for_bad_requests(gateway_url: str, proto: str) -> None:
    """Each client mistake gets its documented code and the connection stays usable."""
    room = unique_room()
    c = await CONNECTORS[proto](gateway_url)
    try:
        assert _error(await c.call("send_message", {"roomId": room, "text": "x"})) == "NOT_IN_ROOM"
        assert _error(await c.call("get_history", {"roomId": room})) == "NOT_IN_ROOM"
        assert _error(await c.call("leave", {"roomId": room})) == "NOT_IN_ROOM"
        assert _error(await c.call("no_such_event", {})) == "UNKNOWN_EVENT"
        assert _error(await c.call("join", {"email": "x@example.com"})) == "INVALID_ARGUMENT"
        assert _error(await c.call("join", {"email": 42, "roomId": room})) == "INVALID_ARGUMENT"
        assert (
            _error(await c.call("join", {"email": "not-an-email", "roomId": room}))
            == "INVALID_ARGUMENT"
        )
        for bad_room in ("a.>", "*", "$JS.API.x", "a b", "x" * 10_000, ""):
            assert (
                _error(await c.call("join", {"email": "x@example.com", "roomId": bad_room}))
                == "INVALID_ARGUMENT"
            )
        assert _error(await c.call("join", ["not", "an", "object"])) == "INVALID_ARGUMENT"
        assert (await c.call("join", {"email": "x@example.com", "roomId": room}))["ok"]
        assert (
            _error(await c.call("send_message", {"roomId": room, "text": ""})) == "INVALID_ARGUMENT"
        )
        assert (
            _error(await c.call("send_message", {"roomId": room, "text": "y" * 4001}))
            == "INVALID_ARGUMENT"
        )
        assert (
            _error(await c.call("send_message", {"roomId": room, "text": 5})) == "INVALID_ARGUMENT"
        )
        assert (
            _error(await c.call("get_history", {"roomId": room, "limit": 201}))
            == "INVALID_ARGUMENT"
        )
        assert (
            _error(await c.call("get_history", {"roomId": room, "beforeSeq": "x"}))
            == "INVALID_ARGUMENT"
        )
        ok = await c.call("send_message", {"roomId": room, "text": "y" * 4000})
        assert ok["ok"] is True
    finally:
        await c.close()


@pytest.mark.parametrize("proto", ["socketio", "native"])
async def test_event_without_ack_gets_error_event(gateway_url: str, proto: str) -> None:
    """An event sent without an ack id is answered with a server `error` event naming it."""
    c = await CONNECTORS[proto](gateway_url)
    try:
        await c.emit("send_message", {"roomId": unique_room(), "text": "no ack"})
        await c.wait_for(lambda ev: any(n == "error" for n, _ in ev))
        (error,) = c.of("error")
        assert error["code"] == "NOT_IN_ROOM"
        assert error["event"] == "send_message"
        assert isinstance(error["message"], str)
    finally:
        await c.close()


async def test_idempotent_send_returns_the_original(gateway_url: str) -> None:
    """Resending a clientMsgId returns the stored message and stores nothing new."""
    room = unique_room()
    c = await _native(gateway_url)
    try:
        await c.call("join", {"email": "dup@example.com", "roomId": room})
        first = await c.call("send_message", {"roomId": room, "text": "once", "clientMsgId": "k-1"})
        again = await c.call("send_message", {"roomId": room, "text": "once", "clientMsgId": "k-1"})
        assert again == first
        nxt = await c.call("send_message", {"roomId": room, "text": "twice", "clientMsgId": "k-2"})
        assert nxt["message"]["seq"] == 2
        page = await c.call("get_history", {"roomId": room})
        assert [m["clientMsgId"] for m in page["messages"]] == ["k-1", "k-2"]
    finally:
        await c.close()


async def test_two_users_with_one_client_msg_id_each_get_their_own(gateway_url: str) -> None:
    """Two users sending ``clientMsgId: "c-1"`` to one room each get their own message
    acked and stored (a clientMsgId is unique per sender, not per room); a retry answers
    the retrier's own; get_history holds both."""
    room = unique_room()
    ann, bob = await _sio(gateway_url), await _native(gateway_url)
    try:
        for client, email in ((ann, "ann@example.com"), (bob, "bob@example.com")):
            assert (await client.call("join", {"email": email, "roomId": room}))["ok"] is True
        acks = [
            await client.call("send_message", {"roomId": room, "text": text, "clientMsgId": "c-1"})
            for client, text in ((ann, "ann's c-1"), (bob, "bob's c-1"))
        ]
        assert [(a["ok"], a["message"]["email"], a["message"]["text"]) for a in acks] == [
            (True, "ann@example.com", "ann's c-1"), (True, "bob@example.com", "bob's c-1")
        ]  # fmt: skip
        assert [a["message"]["seq"] for a in acks] == [1, 2]
        again = await bob.call("send_message", {"roomId": room, "text": "x", "clientMsgId": "c-1"})
        assert again == acks[1]
        page = await ann.call("get_history", {"roomId": room})
        assert page["messages"] == [a["message"] for a in acks]
    finally:
        await ann.close()
        await bob.close()
