"""Light benchmark clients: raw WebSocket frames, native JSON or Socket.IO v5 framing.

One :class:`Client` is one WebSocket (bench/wsclient.py: frames parsed in the protocol's
``data_received``, no task per connection): it answers Engine.IO pings, resolves acks and
hands every ``new_message`` to ``on_message`` and, if asked, the name and length of every
other server event (presence, say) to ``on_event``, all from the transport's callback, so
one uvloop process holds tens of thousands of clients and spends little per delivery.

Also here: percentiles, progress lines on stderr, and the text of a timed message (the
send time first, padded to 64 bytes, so every receiver can compute the end-to-end latency).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from typing import Any

import msgspec
from wsclient import WebSocket, connect

__all__ = [
    "AckHandler",
    "Client",
    "ClientError",
    "DataHandler",
    "EventHandler",
    "latency_stats",
    "percentile",
    "progress",
    "sent_at",
    "timed_text",
]

_decode = msgspec.json.decode
_encode = msgspec.json.encode

MessageHandler = Callable[["Client", dict[str, Any], str | None], None]
"""``(client, message, offset)``; the offset is the Socket.IO resume offset, if any."""
AckHandler = Callable[["Client", int, Any], None]
"""``(client, ack_id, reply)`` for an ack nobody awaits (an :meth:`Client.emit`'s)."""
EventHandler = Callable[["Client", str, int], None]
"""``(client, event_name, frame_len)`` for every server event other than ``new_message``
(``user_joined``, ``user_left``, ``presence_diff``, ``error``): the name is read from the
frame's prefix, the frame is not decoded; ``frame_len`` is the length of the whole text
message in characters (its bytes, for ASCII)."""
DataHandler = Callable[["Client", str, Any], None]
"""``(client, event_name, data)`` for every server event other than ``new_message``,
decoded (``read_state``, ``inbox_update``...)."""


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


def latency_stats(values: list[float]) -> dict[str, float]:
    """Latencies in seconds as ``{n, p50_ms, p99_ms, max_ms}`` (milliseconds, 2 decimals;
    NaN for none)."""
    ms = sorted(v * 1000 for v in values)
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 0.50), 2),
        "p99_ms": round(percentile(ms, 0.99), 2),
        "max_ms": round(ms[-1], 2) if ms else float("nan"),
    }


class Client:
    """One connection of ``protocol`` (``native`` or ``socketio``) to ``base_url``."""

    def __init__(
        self,
        base_url: str,
        protocol: str,
        *,
        email: str,
        on_message: MessageHandler | None = None,
        on_ack: AckHandler | None = None,
        on_event: EventHandler | None = None,
        on_data: DataHandler | None = None,
    ) -> None:
        ws_base = base_url.replace("http", "ws", 1)
        self.url = ws_base + (
            "ws" if protocol == "native" else "socket.io/?EIO=4&transport=websocket"
        )
        self.protocol = protocol
        self.email = email
        self.on_message = on_message
        self.on_ack = on_ack
        """Gets every reply to an :meth:`emit` (ack ids rise in send order); failures are
        counted in ``errors`` either way."""
        self.on_event = on_event
        self.on_data = on_data
        """Gets every server event other than ``new_message``, decoded (name, data); when
        set, ``on_event`` is not called."""
        self.ws: WebSocket | None = None
        self.errors: dict[str, int] = {}
        self.pid: str | None = None
        """Socket.IO: the session's private id from the last CONNECT reply."""
        self.offset: str | None = None
        """Socket.IO: the resume offset of the last ``new_message``."""
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._opening: asyncio.Queue[str] | None = None

    @property
    def is_open(self) -> bool:
        return self.ws is not None and self.ws.is_open

    @property
    def closed(self) -> asyncio.Event:
        """Set once the current connection has ended."""
        if self.ws is None:
            raise ClientError("never connected")
        return self.ws.closed

    @property
    def close_code(self) -> int | None:
        return None if self.ws is None else self.ws.close_code

    async def open(
        self, auth: dict[str, Any] | None = None, *, timeout: float = 30
    ) -> dict[str, Any]:
        """Connect (and, for Socket.IO, CONNECT with ``auth``).

        Returns the CONNECT reply (``{}`` for native). Frames that follow the reply are
        handled as usual.
        """
        inbox: asyncio.Queue[str] = asyncio.Queue()
        self._opening = inbox
        reply: dict[str, Any] = {}
        ws: WebSocket | None = None
        try:
            async with asyncio.timeout(timeout):
                ws = await connect(self.url, self._on_text)
                if self.protocol == "socketio":
                    await _next(ws, inbox)  # Engine.IO open
                    ws.send("40" + (_encode(auth).decode() if auth is not None else ""))
                    while True:
                        frame = await _next(ws, inbox)
                        if frame.startswith("40"):
                            reply = _decode(frame[2:]) if len(frame) > 2 else {}
                            break
                        if frame.startswith("44"):
                            raise ClientError(f"CONNECT refused: {frame[:200]}")
                    self.pid = reply.get("pid")
        except BaseException:
            self._opening = None
            if ws is not None:
                await ws.close()
            raise
        self.ws = ws
        self._opening = None
        while not inbox.empty():  # what came right behind the reply (a replay, say)
            self._on_text(inbox.get_nowait())
        return reply

    async def request(
        self, event: str, data: dict[str, Any], *, timeout: float = 60
    ) -> dict[str, Any]:
        """Send an event with an ack id and wait for the reply object."""
        ws = self.ws
        if ws is None:
            raise ClientError("not connected")
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        ack = self._new_id()
        self._pending[ack] = fut
        closed = asyncio.ensure_future(ws.closed.wait())
        try:
            self._send(event, data, ack)
            waiters: set[asyncio.Future[Any]] = {fut, closed}
            done, _ = await asyncio.wait(waiters, timeout=timeout, return_when="FIRST_COMPLETED")
            if fut in done:
                return fut.result()
            raise ClientError("connection closed" if closed in done else "ack timeout")
        finally:
            closed.cancel()
            self._pending.pop(ack, None)

    async def emit(self, event: str, data: dict[str, Any]) -> int:
        """Send an event with an ack id, not waiting for the ack (failures land in ``errors``,
        every reply goes to ``on_ack``); returns the ack id."""
        ack = self._new_id()
        self._send(event, data, ack)
        return ack

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _send(self, event: str, data: dict[str, Any], ack: int) -> None:
        if self.ws is None:
            raise ClientError("not connected")
        if self.protocol == "native":
            self.ws.send(_encode({"type": event, "id": ack, "data": data}).decode())
        else:
            self.ws.send(f"42{ack}" + _encode([event, data]).decode())

    async def close(self, code: int = 1000) -> None:
        if self.ws is not None:
            await self.ws.close(code)

    def _on_ack(self, ack: int | None, reply: Any) -> None:
        fut = self._pending.get(ack) if ack is not None else None
        if fut is not None and not fut.done():
            fut.set_result(reply)
            return
        if isinstance(reply, dict) and reply.get("ok") is False:
            code = str(reply.get("error", {}).get("code"))
            self.errors[code] = self.errors.get(code, 0) + 1
        if self.on_ack is not None and ack is not None:
            self.on_ack(self, ack, reply)

    def _on_text(self, frame: str) -> None:
        """Every text message: pings answered, acks resolved, messages and events handed
        on."""
        if self._opening is not None:
            self._opening.put_nowait(frame)
            return
        if self.protocol == "native":
            if frame.startswith('{"type":"new_message"'):
                if self.on_message is not None:
                    self.on_message(self, _decode(frame)["data"], None)
            elif frame.startswith('{"type":"ack"'):
                if self._pending or self.on_ack is not None or '"ok":false' in frame:
                    obj = _decode(frame)
                    self._on_ack(obj.get("id"), obj.get("data"))
            elif self.on_data is not None and frame.startswith('{"type":"'):
                obj = _decode(frame)
                self.on_data(self, obj["type"], obj.get("data"))
            elif self.on_event is not None and frame.startswith('{"type":"'):
                self.on_event(self, frame[9 : frame.find('"', 9)], len(frame))
            return
        if frame.startswith('42["new_message"'):
            if self.on_message is not None:
                event = _decode(frame[2:])
                offset = event[2] if len(event) > 2 else None
                if offset is not None:
                    self.offset = offset
                self.on_message(self, event[1], offset)
        elif frame.startswith("43"):
            if self._pending or self.on_ack is not None or '"ok":false' in frame:
                bracket = frame.index("[")
                self._on_ack(int(frame[2:bracket]), _decode(frame[bracket:])[0])
        elif frame == "2" and self.ws is not None:
            self.ws.send("3")
        elif self.on_data is not None and frame.startswith('42["'):
            args = _decode(frame[2:])
            self.on_data(self, args[0], args[1] if len(args) > 1 else None)
        elif self.on_event is not None and frame.startswith('42["'):
            self.on_event(self, frame[4 : frame.find('"', 4)], len(frame))


async def _next(ws: WebSocket, inbox: asyncio.Queue[str]) -> str:
    """The next message during the opening, or ClientError if the connection ends first."""
    if not inbox.empty():
        return inbox.get_nowait()
    get = asyncio.ensure_future(inbox.get())
    closed = asyncio.ensure_future(ws.closed.wait())
    try:
        await asyncio.wait({get, closed}, return_when="FIRST_COMPLETED")
    finally:
        closed.cancel()
        if not get.done():
            get.cancel()
    if get.done() and not get.cancelled():
        return get.result()
    raise ClientError(f"connection closed while opening (code {ws.close_code})")
