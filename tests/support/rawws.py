"""A WebSocket client that does exactly what a test says, and nothing else.

Real clients answer pings, read what arrives and close politely; the peers these tests need
do not: they flood control frames, stop reading, or vanish without a FIN. :class:`RawWs`
speaks RFC 6455 by hand over a plain socket: frames are built here (masked, as a client
must), nothing is read unless the test reads, and :meth:`RawWs.go_silent` leaves the TCP
connection open while never reading or writing again (the kernel keeps ACKing until the
receive buffer is full, then advertises a zero window: a phone that lost its network, or
a client that stopped reading).

:class:`SlowReader` reads, but at the pace a test sets (none, some bytes a second, full
speed), and records every ``new_message`` seq (and Socket.IO offset) it was written.

:class:`PingProbe` is the opposite: a healthy Socket.IO client that records when each
Engine.IO ping arrives, to measure the heartbeat cadence a gateway gives its clients.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import socket
import struct
import time
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "CLOSE",
    "PING",
    "PONG",
    "TEXT",
    "PingProbe",
    "RawWs",
    "SlowReader",
    "frame",
    "native_join",
    "sio_join",
]

TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True) -> bytes:
    """One client frame. ``masked=False`` uses the all-zero mask key (valid on the wire,
    and cheap: floods of many thousand frames are built this way)."""
    if not masked:
        return _header(opcode, len(payload), fin) + b"\0\0\0\0" + payload
    mask = os.urandom(4)
    masked_payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return _header(opcode, len(payload), fin) + mask + masked_payload


def _header(opcode: int, size: int, fin: bool) -> bytes:
    head = bytes([(0x80 if fin else 0) | opcode])
    if size < 126:
        head += bytes([0x80 | size])
    elif size < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", size)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", size)
    return head


class RawWs:
    """One hand-driven WebSocket client connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(
        cls,
        url: str,
        path: str,
        *,
        rcvbuf: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> RawWs:
        """Open a WebSocket to ``path`` on the gateway at ``url`` (``http://host:port``).

        ``rcvbuf`` shrinks the socket's receive buffer (a slow reader's small window).
        """
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        limit = rcvbuf or 2**16
        reader, writer = await asyncio.open_connection(sock=sock, limit=limit)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *(f"{k}: {v}" for k, v in (headers or {}).items()),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status:
            writer.close()
            raise ConnectionError(f"handshake refused: {status.decode(errors='replace')}")
        return cls(reader, writer)

    def send_frame(self, opcode: int, payload: bytes = b"", *, fin: bool = True) -> None:
        """Queue one frame (no waiting: a flooder does not care whether it is read)."""
        self.writer.write(frame(opcode, payload, fin=fin))

    def send_bytes(self, data: bytes) -> None:
        """Queue raw bytes (pre-built frames)."""
        self.writer.write(data)

    def send_text(self, text: str) -> None:
        self.send_frame(TEXT, text.encode())

    async def drain(self, timeout: float = 10.0) -> bool:
        """Wait until the socket takes writes again; ``False`` if it did not in time."""
        try:
            await asyncio.wait_for(self.writer.drain(), timeout)
        except (TimeoutError, ConnectionError):
            return False
        return True

    async def recv(self, timeout: float = 10.0) -> tuple[int, bytes]:
        """The next frame from the server: ``(opcode, payload)``."""
        async with asyncio.timeout(timeout):
            b0, b1 = await self.reader.readexactly(2)
            size = b1 & 0x7F
            if size == 126:
                (size,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif size == 127:
                (size,) = struct.unpack("!Q", await self.reader.readexactly(8))
            return b0 & 0x0F, await self.reader.readexactly(size)

    async def recv_text(self, timeout: float = 10.0) -> str:
        """The next text frame, answering pings and skipping pongs on the way."""
        while True:
            opcode, payload = await self.recv(timeout)
            if opcode == TEXT:
                return payload.decode()
            if opcode == PING:
                self.send_frame(PONG, payload)
            elif opcode == CLOSE:
                raise ConnectionError(f"closed by the server: {close_code(payload)}")

    async def closed_with(self, timeout: float = 10.0) -> int | None:
        """Read until the server's close frame; its code (``None``: dropped without one)."""
        try:
            while True:
                opcode, payload = await self.recv(timeout)
                if opcode == CLOSE:
                    return close_code(payload)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    def go_silent(self) -> None:
        """Never read or write again, and do not close: the peer vanished."""
        self.writer.transport.pause_reading()

    def abort(self) -> None:
        """Drop the TCP connection (RST), as a killed client would."""
        self.writer.transport.abort()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), 2)


def close_code(payload: bytes) -> int | None:
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None


async def sio_join(url: str, email: str, room: str, **connect: Any) -> RawWs:
    """A raw Socket.IO connection that has connected the namespace and joined ``room``."""
    ws = await RawWs.connect(url, "/socket.io/?EIO=4&transport=websocket", **connect)
    opening = await ws.recv_text()
    assert opening.startswith("0{"), opening
    ws.send_text("40")
    assert (await ws.recv_text()).startswith("40{")
    ws.send_text('421["join",' + json.dumps({"email": email, "roomId": room}) + "]")
    while not (reply := await ws.recv_text()).startswith("431"):
        if reply == "2":
            ws.send_text("3")
    assert json.loads(reply[3:])[0]["ok"], reply
    return ws


async def native_join(url: str, email: str, room: str, **connect: Any) -> RawWs:
    """A raw native-protocol connection that has joined ``room``."""
    ws = await RawWs.connect(url, "/ws", **connect)
    data = {"email": email, "roomId": room}
    ws.send_text(json.dumps({"type": "join", "id": 1, "data": data}))
    while True:
        reply = json.loads(await ws.recv_text())
        if reply.get("type") == "ack":
            assert reply["data"]["ok"], reply
            return ws


class PingProbe:
    """A healthy Socket.IO client that answers every Engine.IO ping and records its time."""

    def __init__(self, ws: RawWs) -> None:
        self.ws = ws
        self.pings: list[float] = []
        self.closed_code: int | None = None
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, url: str, email: str, room: str) -> PingProbe:
        probe = cls(await sio_join(url, email, room))
        probe.pings.append(time.monotonic())
        probe._task = asyncio.create_task(probe._run())
        return probe

    async def _run(self) -> None:
        try:
            while True:
                opcode, payload = await self.ws.recv(timeout=3600)
                if opcode == TEXT and payload == b"2":
                    self.pings.append(time.monotonic())
                    self.ws.send_text("3")
                elif opcode == CLOSE:
                    self.closed_code = close_code(payload)
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return

    @property
    def max_gap(self) -> float:
        """The longest time between two pings (or since the last one, if none came since)."""
        times = [*self.pings, time.monotonic()]
        return max(b - a for a, b in itertools.pairwise(times))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.ws.close()


class SlowReader:
    """A joined raw connection (native or Socket.IO) that reads at the pace it is told:
    :meth:`pace` ``0`` reads nothing, a number of bytes a second reads that much (sleeping
    after each frame for its share: the pace is the behaviour under test), ``None`` reads
    at full speed. It answers both protocols' pings, and records ``new_message`` seqs and
    offsets in the order written, and the close code if one came."""

    def __init__(self, ws: RawWs, *, socketio: bool) -> None:
        self.ws = ws
        self.socketio = socketio
        self.seqs: list[int] = []
        self.offsets: list[str] = []
        self.closed_code: int | None = None
        self.ended = asyncio.Event()
        self._rate: float | None = 0
        self._paced = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    def pace(self, bytes_per_s: float | None) -> None:
        self._rate = bytes_per_s
        if bytes_per_s != 0:
            self._paced.set()
        else:
            self._paced.clear()

    async def _run(self) -> None:
        ws = self.ws
        try:
            while True:
                await self._paced.wait()
                opcode, payload = await ws.recv(timeout=3600)
                if opcode == PING:
                    ws.send_frame(PONG, payload)
                elif opcode == CLOSE:
                    self.closed_code = close_code(payload)
                    return
                elif opcode == TEXT:
                    self._record(payload)
                rate = self._rate
                if rate:
                    await asyncio.sleep(len(payload) / rate)
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            self.ended.set()

    def _record(self, payload: bytes) -> None:
        if self.socketio:
            if payload == b"2":
                self.ws.send_text("3")
            elif payload.startswith(b'42["new_message"'):
                _, message, offset = json.loads(payload[2:])
                self.seqs.append(message["seq"])
                self.offsets.append(offset)
        elif payload.startswith(b'{"type":"new_message"'):
            self.seqs.append(json.loads(payload)["data"]["seq"])

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self.ws.close()
