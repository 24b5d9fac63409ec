"""The official socket.io-client (Node) recovers its session across a gateway restart."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import MakeStack
from tests.support.clients import SioClient, unique_room
from tests.support.nodescript import NodeScript

pytestmark = pytest.mark.integration


class NodeClient(NodeScript):
    """``recovering_client.mjs``: one room, commands ``send``/``quit``, a line per event."""

    @classmethod
    async def start(
        cls, url: str, room: str, email: str, transports: str = "websocket"
    ) -> NodeClient:
        return cls(await cls.spawn("recovering_client.mjs", url, room, email, transports))

    def of(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["event"] == event]

    async def wait_for(
        self, event: str, count: int = 1, timeout: float = 20
    ) -> list[dict[str, Any]]:
        await self.until(lambda: len(self.of(event)) >= count, timeout)
        return self.of(event)


@pytest.mark.parametrize("transports", ["websocket", "default"])
async def test_official_client_recovers_after_gateway_restart(
    make_stack: MakeStack, transports: str
) -> None:
    """socket.io-client sees socket.recovered === true after its gateway is killed and
    restarted, and receives every message it missed exactly once, in order: configured
    for WebSocket only, and with its default options (HTTP long-polling)."""
    stack = await make_stack(gateways=2, env={"GATEWAY_SESSION_HEARTBEAT_S": "0.5"})
    first, second = stack.gateway_urls
    room = unique_room("js")
    node = await NodeClient.start(first, room, "node@example.com", transports)
    other = await SioClient().connect(second)
    try:
        (joined,) = await node.wait_for("joined")
        assert joined["reply"]["ok"] is True
        await other.call("join", {"email": "py@example.com", "roomId": room})
        for i in range(3):
            await other.call("send_message", {"roomId": room, "text": f"before {i}"})
        before = await node.wait_for("message", 3)
        assert [m["offset"] for m in before] == [f"{room}:1", f"{room}:2", f"{room}:3"]

        gateway = stack.of_kind("gateway")[0]
        await gateway.kill()
        await node.wait_for("disconnect")
        for i in range(4):
            await other.call("send_message", {"roomId": room, "text": f"missed {i}"})
        await gateway.start()
        await gateway.wait_ready(timeout=30)

        connects = await node.wait_for("connect", 2, timeout=30)
        assert [c["recovered"] for c in connects] == [False, True]
        # With its defaults the client starts on polling and upgrades in the background.
        expected = {"websocket"} if transports == "websocket" else {"polling", "websocket"}
        assert {c["transport"] for c in connects} <= expected
        assert connects[0]["id"] == connects[1]["id"]
        messages = await node.wait_for("message", 7)
        assert [m["message"]["seq"] for m in messages] == list(range(1, 8))
        await node.command("send hello")
        (sent,) = await node.wait_for("sent")
        assert sent["reply"]["ok"] is True and sent["reply"]["message"]["seq"] == 8
        assert len(node.of("joined")) == 1, "no rejoin was needed"
        await other.wait_messages(room, 8)
        assert other.of("user_left") == []
    finally:
        await node.stop()
        await other.close()


async def test_official_client_recovers_the_changes_it_missed(make_stack: MakeStack) -> None:
    """socket.io-client with its default options gets edits and reactions as
    ``message_changed`` with offsets, in seq order with the messages; after its gateway is
    killed it recovers and receives the changes it missed exactly once, then reacts itself."""
    stack = await make_stack(gateways=2, env={"GATEWAY_SESSION_HEARTBEAT_S": "0.5"})
    first, second = stack.gateway_urls
    room = unique_room("js")
    node = await NodeClient.start(first, room, "node@example.com", "default")
    other = await SioClient().connect(second)
    try:
        await node.wait_for("joined")
        await other.call("join", {"email": "py@example.com", "roomId": room})
        await other.call("send_message", {"roomId": room, "text": "hello"})
        await other.call("edit_message", {"roomId": room, "seq": 1, "text": "hello!"})
        (live,) = await node.wait_for("change")
        assert (live["change"]["kind"], live["change"]["seq"], live["offset"]) == (
            "edit", 2, f"{room}:2"
        )  # fmt: skip
        gateway = stack.of_kind("gateway")[0]
        await gateway.kill()
        await node.wait_for("disconnect")
        await other.call("react", {"roomId": room, "seq": 1, "emoji": "🎉"})
        await other.call("send_message", {"roomId": room, "text": "again"})
        await other.call("delete_message", {"roomId": room, "seq": 4})
        await gateway.start()
        await gateway.wait_ready(timeout=30)
        connects = await node.wait_for("connect", 2, timeout=30)
        assert [c["recovered"] for c in connects] == [False, True]
        changes = await node.wait_for("change", 3)
        assert [(c["change"]["seq"], c["change"]["kind"]) for c in changes] == [
            (2, "edit"), (3, "react"), (5, "delete")
        ]  # fmt: skip
        assert [m["message"]["seq"] for m in node.of("message")] == [1, 4]
        await node.command("react 1 👍")
        (reacted,) = await node.wait_for("reacted")
        assert reacted["reply"]["message"]["seq"] == 6, reacted
        await node.wait_for("change", 4)
        history = await other.call("get_history", {"roomId": room})
        (message,) = [m for m in history["messages"] if m["seq"] == 1]
        assert [(r["emoji"], r["count"]) for r in message["reactions"]] == [("🎉", 1), ("👍", 1)]
    finally:
        await node.stop()
        await other.close()


async def test_official_client_defaults_need_no_sticky_sessions(make_stack: MakeStack) -> None:
    """socket.io-client with its default options (long-polling) behind a round-robin
    balancer over two gateways: it connects, joins and chats with a WebSocket client."""
    stack = await make_stack(gateways=2, balancer=True)
    room = unique_room("jsdefault")
    node = await NodeClient.start(stack.client_url, room, "node@example.com", "default")
    other = await SioClient().connect(stack.client_url)
    try:
        (joined,) = await node.wait_for("joined")
        assert joined["reply"]["ok"] is True
        assert node.of("connect")[0]["transport"] in ("polling", "websocket")
        await other.call("join", {"email": "py@example.com", "roomId": room})
        for i in range(5):
            await other.call("send_message", {"roomId": room, "text": f"to node {i}"})
        got = await node.wait_for("message", 5)
        assert [m["message"]["text"] for m in got] == [f"to node {i}" for i in range(5)]
        for i in range(3):
            await node.command(f"send from-node-{i}")
        sent = await node.wait_for("sent", 3)
        assert all(s["reply"]["ok"] for s in sent)
        texts = [m["text"] for m in await other.wait_messages(room, 8)]
        assert texts[5:] == [f"from-node-{i}" for i in range(3)]
        assert node.of("connect_error") == [] and len(node.of("connect")) == 1
    finally:
        await node.stop()
        await other.close()
