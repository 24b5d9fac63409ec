"""The official socket.io-client (Node), configured by default, uses every event of durable
membership, read state and the inbox (docs/protocol.md 4.13) across two gateways."""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import MakeStack
from tests.support.clients import NativeClient, unique_room
from tests.support.logs import stack_errors
from tests.support.nodescript import NodeScript

pytestmark = pytest.mark.integration

TIMEOUT_S = 20.0


class InboxNode(NodeScript):
    """``inbox_client.mjs``: commands in, its JSON lines collected."""

    quit_line = '{"quit":true}'

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        super().__init__(proc)
        self._ids = itertools.count(1)

    @classmethod
    async def start(cls, url: str) -> InboxNode:
        return cls(await cls.spawn("inbox_client.mjs", url))

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["kind"] == kind]

    def events(self, name: str) -> list[Any]:
        """The first argument of every server event ``name``, in arrival order."""
        return [line["args"][0] for line in self.of_kind("event") if line["event"] == name]

    async def _first(self, find: Callable[[], Any]) -> Any:
        await self.until(lambda: find() is not None, TIMEOUT_S)
        return find()

    async def wait_kind(self, kind: str) -> dict[str, Any]:
        return await self._first(lambda: next(iter(self.of_kind(kind)), None))  # type: ignore[no-any-return]

    async def wait_event(self, name: str, match: Callable[[Any], bool]) -> Any:
        """The first server event ``name`` whose argument ``match``es."""
        return await self._first(lambda: next((d for d in self.events(name) if match(d)), None))

    async def call(self, event: str, data: Any) -> Any:
        """``socket.timeout(10000).emitWithAck(event, data)``; the ack's argument."""
        ack_id = next(self._ids)
        await self.command(json.dumps({"id": ack_id, "event": event, "data": data}))
        line = await self._first(
            lambda: next((x for x in self.of_kind("ack") if x["id"] == ack_id), None)
        )
        assert "timeout" not in line, line
        return line["reply"]


def _email(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}@example.com"


def _has(events: list[tuple[str, Any]], name: str, **fields: Any) -> bool:
    return any(n == name and all(d.get(k) == v for k, v in fields.items()) for n, d in events)


async def test_official_client_with_default_options_uses_every_inbox_event(
    make_stack: MakeStack,
) -> None:
    """socket.io-client as ``io(url)`` (long-polling, then its own upgrade) on one gateway,
    the same user's second device (native) and another user on the other gateway: the join
    ack carries role, watermark and unread; mark_read is acked with the state after it and
    reaches the other device as read_state, and a mark there reaches the node the same way;
    membership arrives for a room joined and one unsubscribed elsewhere (which the node then
    leaves); get_rooms pages with ``next`` and follows the inbox, so a message in a room the
    node has not joined comes as inbox_update; unsubscribe is acked and reaches the other
    device; a mark on a room the user left is NOT_MEMBER."""
    stack = await make_stack(gateways=2)
    url_a, url_b = stack.gateway_urls
    ann, bob = _email("ann"), _email("bob")
    den, quiet = unique_room("den"), unique_room("quiet")
    node = await InboxNode.start(url_a)
    laptop = await NativeClient().connect(url_b)
    other = await NativeClient().connect(url_b)
    try:
        opened = await node.wait_kind("open")
        assert opened["transport"] == "polling", "the client's default first transport"
        await node.wait_kind("connect")

        joined = await node.call("join", {"email": ann, "roomId": den})
        assert joined["ok"] is True, joined
        assert (joined["role"], joined["readSeq"], joined["lastSeq"], joined["unread"]) == (
            "owner", 0, 0, 0,
        )  # fmt: skip
        assert (await laptop.call("join", {"email": ann, "roomId": den}))["ok"]
        assert (await other.call("join", {"email": bob, "roomId": den}))["role"] == "member"
        for i in range(3):
            assert (await other.call("send_message", {"roomId": den, "text": f"m{i}"}))["ok"]
        await node.wait_event("new_message", lambda m: m["roomId"] == den and m["seq"] == 3)

        marked = await node.call("mark_read", {"roomId": den, "seq": 2})
        assert marked == {"ok": True, "roomId": den, "readSeq": 2, "lastSeq": 3, "unread": 1}
        await laptop.wait_for(lambda ev: _has(ev, "read_state", roomId=den, readSeq=2, unread=1))
        assert (await laptop.call("mark_read", {"roomId": den, "seq": 3}))["unread"] == 0
        state = await node.wait_event("read_state", lambda s: s["readSeq"] == 3)
        assert (state["roomId"], state["lastSeq"], state["unread"]) == (den, 3, 0)
        assert isinstance(state["userSeq"], int)

        assert (await laptop.call("join", {"email": ann, "roomId": quiet}))["ok"]
        became = await node.wait_event("membership", lambda m: m["roomId"] == quiet)
        assert (became["member"], became["role"], became["readSeq"]) == (True, "owner", 0)

        first = await node.call("get_rooms", {"limit": 1})
        assert first["ok"] is True and first["total"] == 2 and first["next"], first
        second = await node.call("get_rooms", {"limit": 1, "after": first["next"]})
        assert second["ok"] is True and second["next"] is None, second
        assert [r["roomId"] for r in first["rooms"] + second["rooms"]] == [quiet, den]
        whole = await node.call("get_rooms", {"follow": False})
        rooms = {r["roomId"]: r for r in whole["rooms"]}
        assert (rooms[den]["unread"], rooms[den]["lastMessage"]["text"]) == (0, "m2")
        assert (rooms[quiet]["unread"], rooms[quiet]["lastMessage"]) == (0, None)

        assert (await other.call("join", {"email": bob, "roomId": quiet}))["ok"]
        note = await other.call("send_message", {"roomId": quiet, "text": "psst"})
        update = await node.wait_event("inbox_update", lambda u: u["roomId"] == quiet)
        assert update == {"roomId": quiet, "lastSeq": 1, "readSeq": 0, "unread": 1,
                          "lastMessage": note["message"]}  # fmt: skip
        assert [m for m in node.events("new_message") if m["roomId"] == quiet] == []

        joined = await node.call("join", {"email": ann, "roomId": quiet})
        assert (joined["role"], joined["readSeq"], joined["lastSeq"], joined["unread"]) == (
            "owner", 0, 1, 1,
        )  # fmt: skip
        gone = await laptop.call("unsubscribe", {"roomId": quiet})
        assert gone == {"ok": True, "roomId": quiet, "removed": True}
        await node.wait_event("membership", lambda m: m["roomId"] == quiet and not m["member"])
        left = await node.call("send_message", {"roomId": quiet, "text": "still here?"})
        assert left["error"]["code"] == "NOT_IN_ROOM", left

        own = await node.call("unsubscribe", {"roomId": den})
        assert own == {"ok": True, "roomId": den, "removed": True}
        await laptop.wait_for(lambda ev: _has(ev, "membership", roomId=den, member=False))
        refused = await node.call("mark_read", {"roomId": den, "seq": 3})
        assert refused["ok"] is False and refused["error"]["code"] == "NOT_MEMBER", refused
        empty = await node.call("get_rooms", {"follow": False})
        assert (empty["rooms"], empty["next"], empty["total"]) == ([], None, 0)

        upgraded = await node.wait_kind("upgrade")
        assert upgraded["transport"] == "websocket", "the client upgraded by itself"
        assert len(node.of_kind("connect")) == 1
        assert node.of_kind("connect_error") == node.of_kind("disconnect") == []
    finally:
        await node.stop()
        await laptop.close()
        await other.close()
    assert stack_errors(stack.services) == {}
