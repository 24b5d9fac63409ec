"""One Engine.IO session on the HTTP long-polling transport, shaped as a WebSocket.

The connection's task (``serve_socketio``) reads and writes a :class:`PollingConn` exactly
as it does a :class:`~chat_gateway.edge.websocket.WebSocket`: :meth:`recv` returns the
packets the client POSTed, one at a time; :meth:`send_text` and :meth:`write` (frames built
for WebSocket, their payloads taken back out) queue packets for the client, which a ``GET``
collects. So every rule of the Socket.IO layer (events, acks, recovery, heartbeat, rate
limits, the slow-consumer cut) holds on both transports alike.

* **A GET is answered when there is something to send**: at once when packets wait, else
  as soon as one is queued (writes of one loop turn leave in one answer). The heartbeat's
  ping every ``pingInterval`` bounds how long a poll is held. A second GET while one is held
  is a protocol error (the session is closed, as the reference server does). A poll whose
  client went away is cancelled by the edge; its packets stay queued for the next one.
* **A POST** carries packets separated by ``\\x1e``; it is answered ``ok`` at once. More than
  ``_INBOX_MAX`` packets waiting for the connection's task is a flood: the session is cut.
* **Bounded like a WebSocket**: packets queued beyond ``write_cap`` bytes cut the session
  (a client that stopped polling).
* **A close forgets the session at once**, as the reference server does: a GET held at
  that moment gets what was queued and the close packet (``1``), or a noop (``6``) when
  the client itself sent the close; later requests for the sid are unknown (400).
* **The upgrade** (:meth:`upgrade`): a WebSocket opened with the session's sid sends
  ``2probe`` and gets ``3probe``; the held GET is released with a noop (and any GET
  during the probe gets one at once); ``5`` then moves the session onto the WebSocket,
  with whatever was still queued. From then on every call is the WebSocket's own, and
  HTTP requests for the sid get 400 until the WebSocket is gone (then the sid is unknown). A probe that goes wrong or takes longer than its
  timeout closes that WebSocket; the session stays on polling.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from chat_gateway.closecodes import (
    CLOSE_FLOOD,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_SERVICE_RESTART,
    CLOSE_SLOW_CONSUMER,
)
from chat_gateway.edge.answers import HttpAnswer
from chat_gateway.edge.wakeup import Wakeup
from chat_gateway.edge.websocket import Limit, WebSocket
from chat_gateway.protocol import engineio
from chat_gateway.protocol.messages import ProtocolError
from chat_gateway.protocol.wsframe import text_frame, text_payloads

__all__ = ["PollingConn"]

_INBOX_MAX = 256
"""Packets waiting for the connection's task above which the session is cut (a flood)."""
_OK = HttpAnswer(200, b"ok", content_type="text/html")
_PAYLOAD_TYPE = "text/plain; charset=UTF-8"
_NOOP_ANSWER = HttpAnswer(200, engineio.NOOP, content_type=_PAYLOAD_TYPE)

Decorate = Callable[[HttpAnswer], HttpAnswer]


class PollingConn:
    """One long-polling session; see the module docstring."""

    def __init__(
        self,
        sid: str,
        *,
        write_cap: int,
        on_gone: Callable[[PollingConn], None],
    ) -> None:
        self.sid = sid
        self._loop = asyncio.get_running_loop()
        self._write_cap = write_cap
        self._on_gone: Callable[[PollingConn], None] | None = on_gone
        self._inbox: deque[str] = deque()
        self._wakeup = Wakeup(self._loop)
        self._outbox: list[bytes] = []
        self._out_bytes = 0
        self._poll: asyncio.Future[HttpAnswer] | None = None
        self._decorate: Decorate | None = None
        self._flush_pending = False
        self._open = True
        self._closed_by_us = False
        self._client_closing = False
        """The client sent the Engine.IO close packet."""
        self._lost: asyncio.Future[None] = self._loop.create_future()
        self._on_limit: Callable[[Limit], None] | None = None
        self._probing = False
        """A WebSocket probed the upgrade: GETs are answered at once with a noop."""
        self._ws: WebSocket | None = None
        """The WebSocket the session moved to (after the upgrade: every call goes there)."""
        self._forget: asyncio.Future[None] | None = None
        self.last_pong = self._loop.time()
        """When the client last answered a ping (set by the connection's task)."""

    # -- state (as WebSocket) ---------------------------------------------------------------

    @property
    def upgraded(self) -> bool:
        return self._ws is not None

    @property
    def upgrading(self) -> bool:
        """A WebSocket is probing, or the session has moved to one."""
        return self._probing or self._ws is not None

    @property
    def open(self) -> bool:
        return self._ws.open if self._ws is not None else self._open

    @property
    def closing(self) -> bool:
        return not self.open

    @property
    def buffered(self) -> int:
        """Bytes of packets queued for the client and not collected yet."""
        return self._ws.buffered if self._ws is not None else self._out_bytes

    @property
    def close_code_received(self) -> int | None:
        # Over polling the client says goodbye with an Engine.IO close packet instead.
        return self._ws.close_code_received if self._ws is not None else None

    @property
    def write_cap(self) -> int:
        return self._write_cap

    @write_cap.setter
    def write_cap(self, value: int) -> None:
        self._write_cap = value
        if self._ws is not None:
            self._ws.write_cap = value

    @property
    def closed_by_us(self) -> bool:
        return self._ws.closed_by_us if self._ws is not None else self._closed_by_us

    def on_limit(self, callback: Callable[[Limit], None]) -> None:
        self._on_limit = callback
        if self._ws is not None:
            self._ws.on_limit(callback)

    # -- HTTP ---------------------------------------------------------------------------------

    def post(self, body: bytes) -> HttpAnswer:
        """The packets of a POST; ``ok``, or a 400 that ends the session (or, once the
        session is on a WebSocket, a 400 that changes nothing)."""
        if not self._open or self._ws is not None:
            return engineio_bad_request()
        try:
            packets = engineio.decode_payload(body)
        except ProtocolError as exc:
            self.close(exc.close_code, exc.reason)
            return engineio_bad_request()
        if len(self._inbox) + len(packets) > _INBOX_MAX:
            self.cut("flood", CLOSE_FLOOD, "too many packets waiting")
            return engineio_bad_request()
        self._client_closing = self._client_closing or "1" in packets
        self._inbox.extend(packets)
        self._wakeup.wake()
        return _OK

    def poll(self, decorate: Decorate) -> HttpAnswer | asyncio.Future[HttpAnswer]:
        """A GET: the packets waiting, or a future of the next ones."""
        if self._ws is not None:
            return decorate(engineio_bad_request())
        if self._poll is not None and self._poll.done():
            self._poll = self._decorate = None  # cancelled, its callback not run yet
        if self._poll is not None:
            self.close(CLOSE_FLOOD, "overlapping polls")
            return engineio_bad_request()
        if self._outbox:
            return decorate(self._take())
        if not self._open:
            return engineio_bad_request()
        if self._probing:
            return decorate(_NOOP_ANSWER)
        poll: asyncio.Future[HttpAnswer] = self._loop.create_future()
        self._poll, self._decorate = poll, decorate
        poll.add_done_callback(self._poll_done)
        return poll

    def _poll_done(self, poll: asyncio.Future[HttpAnswer]) -> None:
        if self._poll is poll:  # cancelled: the client went away, nothing was taken
            self._poll = self._decorate = None

    def _take(self) -> HttpAnswer:
        body = engineio.encode_payload(self._outbox)
        self._outbox, self._out_bytes = [], 0
        return HttpAnswer(200, body, content_type=_PAYLOAD_TYPE)

    def _flush(self) -> None:
        self._flush_pending = False
        poll, decorate = self._poll, self._decorate
        if poll is None or decorate is None or not self._outbox:
            return
        self._poll = self._decorate = None
        if not poll.done():  # else cancelled: the packets wait for the next poll
            poll.set_result(decorate(self._take()))

    # -- inbound (as WebSocket) -----------------------------------------------------------

    async def recv(self) -> str | bytes | None:
        """The next packet the client sent; ``None`` once the session is closing."""
        while True:
            if self._inbox:
                return self._inbox.popleft()
            if self._ws is not None:
                return await self._ws.recv()
            if not self._open:
                return None
            await self._wakeup.wait()

    # -- outbound (as WebSocket) ----------------------------------------------------------

    def write(self, data: bytes) -> bool:
        """Queue the packets of pre-built text frames; ``False`` once closing."""
        if self._ws is not None:
            return self._ws.write(data)
        if not self._open:
            return False
        self._queue(text_payloads(data))
        return True

    def send_text(self, payload: bytes) -> bool:
        if self._ws is not None:
            return self._ws.send_text(payload)
        if not self._open:
            return False
        self._queue([payload])
        return True

    def _queue(self, packets: list[bytes]) -> None:
        self._outbox += packets
        self._out_bytes += sum(len(p) for p in packets)
        if self._out_bytes > self._write_cap and self._open:
            self.cut("overflow", CLOSE_SLOW_CONSUMER, "slow consumer")
            return
        if not self._flush_pending:
            self._flush_pending = True
            self._loop.call_soon(self._flush)

    def ping(self) -> None:
        """WebSocket pings do not exist here; Engine.IO pings are packets."""

    async def drain(self) -> None:
        """Over polling nothing to wait for: packets wait until a poll takes them."""
        if self._ws is not None:
            await self._ws.drain()

    # -- closing --------------------------------------------------------------------------

    def close(self, code: int, reason: str = "", *, timeout_s: float | None = None) -> bool:
        """End the session now: a held GET gets what is queued and the close packet (a
        noop when the client closed); ``False`` when already closed. (``code``, ``reason``
        and ``timeout_s`` are the WebSocket's; nothing here waits for the client.)"""
        if self._ws is not None:
            return self._ws.close(code, reason, timeout_s=timeout_s)
        if not self._open:
            return False
        self._open = False
        self._closed_by_us = True
        self._inbox.clear()
        if self._poll is not None:
            self._outbox.append(engineio.NOOP if self._client_closing else engineio.CLOSE)
            self._flush()
        self._gone()
        return True

    def cut(self, limit: Limit, code: int, reason: str, *, grace_s: float | None = None) -> None:
        if self._ws is not None:
            self._ws.cut(limit, code, reason, grace_s=grace_s)
            return
        on_limit = self._on_limit  # the close below lets go of it
        if self.close(code, reason, timeout_s=grace_s) and on_limit is not None:
            on_limit(limit)

    def abort(self) -> None:
        if self._ws is not None:
            self._ws.abort()
        self._gone()

    def _gone(self) -> None:
        if self._lost.done():
            return
        self._open = False
        poll, self._poll, self._decorate = self._poll, None, None
        if poll is not None and not poll.done():
            poll.set_result(engineio_bad_request())
        self._inbox.clear()
        self._outbox, self._out_bytes = [], 0
        self._lost.set_result(None)
        self._wakeup.wake()
        on_gone, self._on_gone, self._on_limit = self._on_gone, None, None
        if on_gone is not None:
            on_gone(self)

    async def wait_closed(self) -> None:
        if self._ws is not None:
            await self._ws.wait_closed()
        else:
            await asyncio.shield(self._lost)

    # -- the upgrade ------------------------------------------------------------------------

    async def upgrade(self, ws: WebSocket, *, timeout_s: float) -> None:
        """Probe ``ws`` and move the session onto it; see the module docstring."""
        self._probing = True  # one probe at a time
        try:
            async with asyncio.timeout(timeout_s):
                if await ws.recv() != "2probe" or not self._open:
                    raise _UpgradeFailed
                ws.send_text(b"3probe")
                self._release_poll()
                if await ws.recv() != "5" or not self._open:
                    raise _UpgradeFailed
        except (TimeoutError, _UpgradeFailed):
            self._probing = False
            ws.close(CLOSE_PROTOCOL_ERROR, "upgrade failed")
            return
        except asyncio.CancelledError:
            self._probing = False
            ws.close(CLOSE_SERVICE_RESTART, "service restart")
            raise
        self._switch(ws)

    def _release_poll(self) -> None:
        poll, decorate = self._poll, self._decorate
        self._poll = self._decorate = None
        if poll is not None and decorate is not None and not poll.done():
            poll.set_result(decorate(_NOOP_ANSWER))

    def _switch(self, ws: WebSocket) -> None:
        self._probing = False
        self._release_poll()
        ws.write_cap = self._write_cap
        if self._on_limit is not None:
            ws.on_limit(self._on_limit)
        if self._outbox:
            ws.write(b"".join(text_frame(packet) for packet in self._outbox))
        self._outbox, self._out_bytes = [], 0
        self._ws = ws
        self._forget = asyncio.ensure_future(self._forget_when_closed(ws))
        self._wakeup.wake()

    async def _forget_when_closed(self, ws: WebSocket) -> None:
        await ws.wait_closed()
        self._gone()


class _UpgradeFailed(Exception):
    """The WebSocket did not probe and upgrade as Engine.IO says."""


def engineio_bad_request() -> HttpAnswer:
    """The reference server's answer to a request it will not serve for a session."""
    return HttpAnswer(400, b'{"code":3,"message":"Bad request"}', content_type="application/json")
