"""Real clients for the tests: python-socketio's AsyncClient and a plain websockets client.

Both record every server event and expose the same small API, so a test can be written
once and run over either protocol.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import socketio
import websockets
from websockets.asyncio.client import ClientConnection

__all__ = [
    "DroppedBeforeAck",
    "NativeClient",
    "NotConnected",
    "SioClient",
    "unique_room",
]

SERVER_EVENTS = (
    "new_message", "user_joined", "user_left", "presence_diff", "error",
    "read_state", "membership", "inbox_update", "typing",
)  # fmt: skip
DEFAULT_TIMEOUT = 10.0


class NotConnected(ConnectionError):
    """The call was not sent: the client is (re)connecting."""


class DroppedBeforeAck(ConnectionError):
    """The call was sent but the connection dropped before its ack arrived."""


def unique_room(prefix: str = "t") -> str:
    """A room id no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class _Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self._changed = asyncio.Condition()

    async def _record(self, name: str, data: Any) -> None:
        async with self._changed:
            self.events.append((name, data))
            self._changed.notify_all()

    def of(self, name: str) -> list[Any]:
        """Payloads of every recorded event ``name``, in arrival order."""
        return [d for n, d in self.events if n == name]

    async def wait_for(
        self, predicate: Callable[[list[tuple[str, Any]]], bool], timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        """Wait until ``predicate(events)`` holds (checked on every new event)."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: predicate(self.events))

    async def wait_messages(
        self, room_id: str, count: int, timeout: float = DEFAULT_TIMEOUT
    ) -> list[Any]:
        """Wait for ``count`` new_message events of ``room_id``; returns them."""
        await self.wait_for(
            lambda ev: (
                sum(1 for n, d in ev if n == "new_message" and d["roomId"] == room_id) >= count
            ),
            timeout,
        )
        return [d for d in self.of("new_message") if d["roomId"] == room_id]


class _RecoveringAsyncClient(socketio.AsyncClient):  # type: ignore[misc]
    """python-socketio's client plus connection state recovery as socket.io-client does it.

    python-socketio has no client side of recovery; this adds exactly what socket.io-client
    (>= 4.6) does: keep the ``pid`` of the CONNECT reply, keep the last string argument of
    every event as the offset, send both in the CONNECT packet of a reconnect, and call the
    connection *recovered* when the server answers with the same ``pid``.
    """

    def __init__(self, *, base_auth: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pid: str | None = None
        self.last_offset: str | None = None
        self.recovered = False
        self.connects: list[bool] = []
        self._base_auth = dict(base_auth or {})

    def auth_payload(self) -> dict[str, Any]:
        if self.pid is None:
            return dict(self._base_auth)
        return {**self._base_auth, "pid": self.pid, "offset": self.last_offset}

    async def _handle_connect(self, namespace: str, data: Any) -> None:
        pid = (data or {}).get("pid")
        self.recovered = bool(pid) and pid == self.pid
        self.pid = pid
        self.connects.append(self.recovered)
        await super()._handle_connect(namespace, data)

    async def _handle_event(self, namespace: str, id: Any, data: Any) -> None:
        if self.pid is not None and len(data) > 2 and isinstance(data[-1], str):
            self.last_offset = data[-1]
        await super()._handle_event(namespace, id, data)


class SioClient(_Recorder):
    """python-socketio AsyncClient (with recovery support), over the websocket transport
    unless ``transports`` is ``None``: then with the library's default, HTTP long-polling
    first and an upgrade to WebSocket, as a client configured by default runs."""

    def __init__(
        self,
        *,
        reconnection: bool = False,
        auth: dict[str, Any] | None = None,
        transports: list[str] | None = ["websocket"],  # noqa: B006 (never mutated)
        **client_kwargs: Any,
    ) -> None:
        super().__init__()
        self.transports = transports
        self.sio = _RecoveringAsyncClient(
            base_auth=auth,
            reconnection=reconnection,
            reconnection_delay=0.2,
            reconnection_delay_max=1.0,
            **client_kwargs,
        )
        self.offsets: list[str] = []
        self._dropped = asyncio.Event()
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("connect", self._on_connect)
        for name in SERVER_EVENTS:
            self.sio.on(name, self._handler(name))

    async def _on_disconnect(self, *_reason: Any) -> None:
        self._dropped.set()

    async def _on_connect(self) -> None:
        self._dropped = asyncio.Event()

    def _handler(self, name: str) -> Callable[..., Any]:
        async def on_event(data: Any = None, *extra: Any) -> None:
            if extra and isinstance(extra[-1], str):
                self.offsets.append(extra[-1])
            await self._record(name, data)

        return on_event

    @property
    def recovered(self) -> bool:
        return bool(self.sio.recovered)

    @property
    def connects(self) -> list[bool]:
        """One entry per CONNECT reply: whether that connection recovered the session."""
        return list(self.sio.connects)

    def is_connected(self) -> bool:
        return bool(self.sio.connected)

    async def connect(self, url: str) -> SioClient:
        await self.sio.connect(
            url, transports=self.transports, auth=self.sio.auth_payload, wait_timeout=10
        )
        return self

    async def call(self, event: str, data: Any, timeout: float = DEFAULT_TIMEOUT) -> Any:
        """Emit with an ack; a drop of the connection fails the call at once with
        ConnectionError (an ack can never arrive on a new connection)."""
        dropped = self._dropped
        if dropped.is_set() or not self.sio.connected:
            raise NotConnected("not connected")
        call = asyncio.ensure_future(self.sio.call(event, data, timeout=timeout))
        drop = asyncio.ensure_future(dropped.wait())
        try:
            await asyncio.wait({call, drop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            drop.cancel()
        if call.done():
            return call.result()
        call.cancel()
        raise DroppedBeforeAck("connection dropped before the ack")

    async def emit(self, event: str, data: Any) -> None:
        await self.sio.emit(event, data)

    async def close(self) -> None:
        await self.sio.disconnect()


class NativeClient(_Recorder):
    """The native JSON protocol over a plain websockets connection."""

    def __init__(self) -> None:
        super().__init__()
        self.ws: ClientConnection | None = None
        self._ids = itertools.count(1)
        self._acks: dict[int, asyncio.Future[Any]] = {}
        self._reader: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self.stray_acks: list[tuple[float, Any]] = []
        """Acks of frames sent with send_raw (monotonic receive time, data)."""
        self.ack_order: list[int] = []
        """The ids of every ack received, in arrival order."""

    async def connect(self, url: str) -> NativeClient:
        base = url.replace("http://", "ws://").rstrip("/")
        self.ws = await websockets.connect(f"{base}/ws")
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                if frame["type"] == "ack":
                    self.ack_order.append(frame["id"])
                    future = self._acks.pop(frame["id"], None)
                    if future is not None and not future.done():
                        future.set_result(frame["data"])
                    elif future is None:
                        async with self._changed:
                            self.stray_acks.append((time.monotonic(), frame["data"]))
                            self._changed.notify_all()
                else:
                    await self._record(frame["type"], frame.get("data"))
        except websockets.ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code
            self.closed.set()
            for future in self._acks.values():
                if not future.done():
                    future.set_exception(DroppedBeforeAck("connection closed before the ack"))
            self._acks.clear()

    def is_connected(self) -> bool:
        return self.ws is not None and not self.closed.is_set()

    async def send_raw(self, frame: str | bytes) -> None:
        assert self.ws is not None
        if self.closed.is_set():
            raise NotConnected("connection closed")
        await self.ws.send(frame)

    async def call(self, event: str, data: Any, timeout: float = DEFAULT_TIMEOUT) -> Any:
        ack_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._acks[ack_id] = future
        await self.send_raw(json.dumps({"type": event, "id": ack_id, "data": data}))
        return await asyncio.wait_for(future, timeout)

    async def emit(self, event: str, data: Any) -> None:
        await self.send_raw(json.dumps({"type": event, "data": data}))

    async def pipeline(
        self, calls: list[tuple[str, Any]], timeout: float = DEFAULT_TIMEOUT
    ) -> tuple[list[int], list[Any]]:
        """Send every call without waiting for any ack, in this order; their ack ids and
        acks (in the same order)."""
        ids = [next(self._ids) for _ in calls]
        loop = asyncio.get_running_loop()
        futures = [self._acks.setdefault(i, loop.create_future()) for i in ids]
        for ack_id, (event, data) in zip(ids, calls, strict=True):
            await self.send_raw(json.dumps({"type": event, "id": ack_id, "data": data}))
        return ids, list(await asyncio.wait_for(asyncio.gather(*futures), timeout))

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await self._reader
