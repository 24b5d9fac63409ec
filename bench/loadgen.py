"""Light benchmark clients: raw WebSocket frames, native JSON or Socket.IO v5 framing.

One :class:`Client` is one WebSocket and, once open, exactly one reader task: it answers
Engine.IO pings, resolves acks and hands every ``new_message`` to ``on_message``. Nothing
else runs per client, so one uvloop process holds tens of thousands of them. No keepalive
pings from our side (``ping_interval=None``); the library still answers the server's.

Also here: percentiles, progress lines on stderr, and the text of a timed message (the
send time first, padded to 64 bytes, so every receiver can compute the end-to-end latency).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable
from typing import Any

import msgspec
import websockets
from websockets.asyncio.client import ClientConnection

__all__ = ["Client", "ClientError", "percentile", "progress", "sent_at", "timed_text"]

_decode = msgspec.json.decode
_encode = msgspec.json.encode

MessageHandler = Callable[["Client", dict[str, Any], str | None], None]
"""``(client, message, offset)``; the offset is the Socket.IO resume offset, if any."""


class ClientError(Exception):
    """A connect, CONNECT or ack that failed; ``code`` is the server's error code if any."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


def progress(text: str) -> None:
    """One progress line on stderr, with the wall-clock time."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def timed_text() -> str:
    """64 bytes: the send time (20 characters) and padding."""
    return f"{time.time():020.6f}" + "x" * 44


def sent_at(text: str) -> float:
    return float(text[:20])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class Client:
    """One connection of ``protocol`` (``native`` or ``socketio``) to ``base_url``."""

    def __init__(
        self,
        base_url: str,
        protocol: str,
        *,
        email: str,
        on_message: MessageHandler | None = None,
    ) -> None:
        ws_base = base_url.replace("http", "ws", 1)
        self.url = ws_base + (
            "ws" if protocol == "native" else "socket.io/?EIO=4&transport=websocket"
        )
        self.protocol = protocol
        self.email = email
        self.on_message = on_message
        self.ws: ClientConnection | None = None
        self.reader: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self.errors: dict[str, int] = {}
        self.pid: str | None = None
        """Socket.IO: the session's private id from the last CONNECT reply."""
        self.offset: str | None = None
        """Socket.IO: the resume offset of the last ``new_message``."""
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}

    @property
    def is_open(self) -> bool:
        return self.ws is not None and not self.closed.is_set()

    async def open(
        self, auth: dict[str, Any] | None = None, *, timeout: float = 30
    ) -> dict[str, Any]:
        """Connect (and, for Socket.IO, CONNECT with ``auth``); start the reader.

        Returns the CONNECT reply (``{}`` for native).
        """
        async with asyncio.timeout(timeout):
            ws = await websockets.connect(
                self.url, max_size=None, compression=None, ping_interval=None, open_timeout=None
            )
            reply: dict[str, Any] = {}
            try:
                if self.protocol == "socketio":
                    await ws.recv()  # Engine.IO open
                    await ws.send("40" + (_encode(auth).decode() if auth is not None else ""))
                    while True:
                        frame = await ws.recv()
                        if isinstance(frame, str) and frame.startswith("40"):
                            reply = _decode(frame[2:]) if len(frame) > 2 else {}
                            break
                        if isinstance(frame, str) and frame.startswith("44"):
                            raise ClientError(f"CONNECT refused: {frame[:200]}")
                    self.pid = reply.get("pid")
            except BaseException:
                await ws.close()
                raise
        self.ws = ws
        self.closed = asyncio.Event()
        self.close_code = None
        self.reader = asyncio.ensure_future(self._read(ws))
        return reply

    async def request(
        self, event: str, data: dict[str, Any], *, timeout: float = 60
    ) -> dict[str, Any]:
        """Send an event with an ack id and wait for the reply object."""
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        ack = self._send_nowait_id()
        self._pending[ack] = fut
        try:
            await self._send(event, data, ack)
            async with asyncio.timeout(timeout):
                return await fut
        finally:
            self._pending.pop(ack, None)

    async def emit(self, event: str, data: dict[str, Any]) -> None:
        """Send an event with an ack id, not waiting for the ack (failures land in ``errors``)."""
        await self._send(event, data, self._send_nowait_id())

    def _send_nowait_id(self) -> int:
        self._next_id += 1
        return self._next_id

    async def _send(self, event: str, data: dict[str, Any], ack: int) -> None:
        if self.ws is None:
            raise ClientError("not connected")
        if self.protocol == "native":
            await self.ws.send(_encode({"type": event, "id": ack, "data": data}).decode())
        else:
            await self.ws.send(f"42{ack}" + _encode([event, data]).decode())

    async def close(self, code: int = 1000) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close(code)
        if self.reader is not None:
            with contextlib.suppress(BaseException):
                await self.reader

    def _on_ack(self, ack: int | None, reply: Any) -> None:
        fut = self._pending.get(ack) if ack is not None else None
        if fut is not None and not fut.done():
            fut.set_result(reply)
        elif isinstance(reply, dict) and reply.get("ok") is False:
            code = str(reply.get("error", {}).get("code"))
            self.errors[code] = self.errors.get(code, 0) + 1

    async def _read(self, ws: ClientConnection) -> None:
        native = self.protocol == "native"
        try:
            async for frame in ws:
                if not isinstance(frame, str):
                    continue
                if native:
                    if frame.startswith('{"type":"new_message"'):
                        if self.on_message is not None:
                            self.on_message(self, _decode(frame)["data"], None)
                    elif frame.startswith('{"type":"ack"') and (
                        self._pending or '"ok":false' in frame
                    ):
                        obj = _decode(frame)
                        self._on_ack(obj.get("id"), obj.get("data"))
                    continue
                if frame.startswith('42["new_message"'):
                    if self.on_message is not None:
                        event = _decode(frame[2:])
                        offset = event[2] if len(event) > 2 else None
                        if offset is not None:
                            self.offset = offset
                        self.on_message(self, event[1], offset)
                elif frame.startswith("43"):
                    if self._pending or '"ok":false' in frame:
                        bracket = frame.index("[")
                        self._on_ack(int(frame[2:bracket]), _decode(frame[bracket:])[0])
                elif frame == "2":
                    await ws.send("3")
        except websockets.ConnectionClosed:
            pass
        finally:
            self.close_code = ws.close_code
            self.closed.set()
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(ClientError("connection closed"))
