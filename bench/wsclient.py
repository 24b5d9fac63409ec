"""A minimal WebSocket client on ``asyncio.Protocol``: the load generator's transport.

The load generator must not be the bottleneck of a benchmark, and a general WebSocket
library spends most of its time per frame in machinery a benchmark does not need (frame
objects, per-message queues, a ``recv()`` round trip through the event loop). This client
parses frames straight out of ``data_received`` and hands each text message to a callback;
it runs no task per connection. It speaks just enough of RFC 6455 for our servers: the
opening handshake, text frames (fragmented or not), ping -> pong, the close handshake. No
extensions, no binary messages (ignored). Client frames are masked with a per-connection
random key, as the RFC requires.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Callable
from urllib.parse import urlsplit

__all__ = ["WebSocket", "WebSocketError", "connect"]

TextHandler = Callable[[str], None]


class WebSocketError(Exception):
    """The opening handshake failed (not a 101, or the connection closed during it)."""


def _mask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    if n == 0:
        return payload
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


def _header(opcode: int, n: int) -> bytes:
    if n < 126:
        return bytes((0x80 | opcode, 0x80 | n))
    if n < 65536:
        return bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    return bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")


class WebSocket(asyncio.Protocol):
    """One client connection. ``on_text`` gets every text message; ``closed`` is set at the
    end, with ``close_code`` (1006 when the connection dropped without a close frame)."""

    def __init__(self, on_text: TextHandler) -> None:
        self.on_text = on_text
        self.transport: asyncio.Transport | None = None
        self.handshake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self._key = os.urandom(4)
        self._buf = bytearray()
        self._upgraded = False
        self._fragments: list[bytes] = []
        self._close_sent = False
        self._request = b""

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        if not self._upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[: buf.find(b"\r\n")])
            del buf[: end + 4]
            if b" 101 " not in status + b" ":
                self._fail(WebSocketError(f"handshake refused: {status.decode(errors='replace')}"))
                return
            self._upgraded = True
            if not self.handshake.done():
                self.handshake.set_result(None)
        pos = 0
        size = len(buf)
        while size - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            n = b1 & 0x7F
            start = pos + 2
            if n == 126:
                if size - pos < 4:
                    break
                n = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                start = pos + 4
            elif n == 127:
                if size - pos < 10:
                    break
                n = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                start = pos + 10
            if b1 & 0x80:  # a masked server frame: not allowed, but cheap to accept
                start += 4
            if size < start + n:
                break
            payload = bytes(buf[start : start + n])
            if b1 & 0x80:
                payload = _mask(payload, bytes(buf[start - 4 : start]))
            pos = start + n
            self._frame(b0 & 0x80, b0 & 0x0F, payload)
        if pos:
            del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.close_code is None:
            self.close_code = 1006
        if not self.handshake.done():
            self.handshake.set_exception(WebSocketError("connection closed during the handshake"))
        self.closed.set()

    # frames

    def _frame(self, fin: int, opcode: int, payload: bytes) -> None:
        if opcode == 0x1 or opcode == 0x0:  # text, or a continuation of one
            if not fin:
                self._fragments.append(payload)
                return
            if self._fragments:
                payload = b"".join([*self._fragments, payload])
                self._fragments.clear()
            self.on_text(payload.decode())
        elif opcode == 0x9:
            self._write(0xA, payload)
        elif opcode == 0x8:
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            if not self._close_sent:
                self._write(0x8, payload[:2])
                self._close_sent = True
            if self.transport is not None:
                self.transport.close()

    def _write(self, opcode: int, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(
                _header(opcode, len(payload)) + self._key + _mask(payload, self._key)
            )

    def _fail(self, exc: Exception) -> None:
        if not self.handshake.done():
            self.handshake.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    # API

    @property
    def is_open(self) -> bool:
        return self._upgraded and not self.closed.is_set() and not self._close_sent

    def send(self, text: str) -> None:
        """Queue one text message (never blocks; the transport buffers)."""
        self._write(0x1, text.encode())

    async def close(self, code: int = 1000, *, timeout: float = 5) -> None:
        """The close handshake: send a close frame, wait for the server's, then drop."""
        if not self._close_sent and self._upgraded:
            self._write(0x8, code.to_bytes(2, "big"))
            self._close_sent = True
        try:
            async with asyncio.timeout(timeout):
                await self.closed.wait()
        except TimeoutError:
            if self.transport is not None:
                self.transport.abort()


async def connect(url: str, on_text: TextHandler) -> WebSocket:
    """Open ``ws://host:port/path?query`` and complete the opening handshake."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    key = base64.b64encode(os.urandom(16)).decode()
    loop = asyncio.get_running_loop()
    ws = WebSocket(on_text)
    ws._request = (
        f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    transport, _ = await loop.create_connection(lambda: ws, host, port)
    try:
        await ws.handshake
    except BaseException:
        transport.abort()
        raise
    return ws
