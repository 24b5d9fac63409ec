"""An Engine.IO long-polling session driven request by request (aiohttp)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

__all__ = ["SEP", "Poller"]

SEP = "\x1e"


class Poller:
    """One Engine.IO long-polling session driven request by request."""

    def __init__(
        self, base: str, http: aiohttp.ClientSession, *, path: str = "/socket.io/"
    ) -> None:
        self.url = base.rstrip("/") + path + "?EIO=4&transport=polling"
        self.http = http
        self.sid = ""
        self.handshake: dict[str, Any] = {}

    async def open(self) -> Poller:
        async with self.http.get(self.url) as response:
            assert response.status == 200, await response.text()
            body = await response.text()
        assert body.startswith("0{"), body
        self.handshake = json.loads(body[1:])
        self.sid = self.handshake["sid"]
        return self

    @property
    def session_url(self) -> str:
        return f"{self.url}&sid={self.sid}"

    async def post(self, *packets: str) -> tuple[int, str]:
        async with self.http.post(self.session_url, data=SEP.join(packets).encode()) as response:
            return response.status, await response.text()

    async def get(self) -> tuple[int, str]:
        async with self.http.get(self.session_url) as response:
            return response.status, await response.text()

    async def packets(self) -> list[str]:
        status, body = await self.get()
        assert status == 200, body
        return body.split(SEP)

    async def until(self, wanted: int, prefix: str, timeout: float = 10) -> list[str]:
        """Poll until ``wanted`` packets starting with ``prefix`` arrived; every packet."""
        seen: list[str] = []
        async with asyncio.timeout(timeout):
            while sum(p.startswith(prefix) for p in seen) < wanted:
                for packet in await self.packets():
                    if packet == "2":
                        assert (await self.post("3"))[0] == 200  # answer the heartbeat
                    seen.append(packet)
        return seen

    async def connect(self) -> list[str]:
        """CONNECT the namespace (``40``) and wait for the reply; every packet until then."""
        assert await self.post("40") == (200, "ok")
        return await self.until(1, "40")

    async def join(self, email: str, room: str, *, ack: int = 1) -> list[str]:
        """``join`` with ack id ``ack`` and wait for its ack; every packet until then."""
        join = json.dumps(["join", {"email": email, "roomId": room}])
        assert await self.post(f"42{ack}{join}") == (200, "ok")
        return await self.until(1, f"43{ack}")
