"""One Engine.IO session on the HTTP long-polling transport: a carrier like a WebSocket.

A :class:`PollingCarrier` keeps the :class:`~chat_gateway.carrier.Carrier` contract, so the
connection on top reads and writes it exactly as it does a
:class:`~chat_gateway.edge.websocket.WebSocket`: :meth:`recv` returns the packets the client
POSTed, one at a time; :meth:`send_text` and :meth:`write` (frames built for WebSocket,
their payloads taken back out) queue packets for the client, which a ``GET`` collects. So
every rule of the Socket.IO layer (events, acks, recovery, heartbeat, rate limits, the
slow-consumer cut) holds on both transports alike.

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
  during the probe gets one at once); ``5`` then moves the connection onto the WebSocket:
  whatever was still queued is written there, and the WebSocket is handed to the
  :meth:`on_moved` callback (the connection writes there from then on, and reads there
  once it has read what was POSTed before). The polling carrier keeps only its HTTP-side
  duties: requests for the sid get 400 until the WebSocket is gone (then the sid is
  unknown). A probe that goes wrong or takes longer than its timeout closes that WebSocket;
  the session stays on polling.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from enum import Enum

from chat_gateway.carrier import Carrier, Limit
from chat_gateway.closecodes import (
    CLOSE_FLOOD,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_SERVICE_RESTART,
    CLOSE_SLOW_CONSUMER,
)
from chat_gateway.edge.answers import HttpAnswer
from chat_gateway.edge.inbox import Inbox
from chat_gateway.edge.pollqueue import PAYLOAD_TYPE, Decorate, PollQueue
from chat_gateway.edge.websocket import WebSocket
from chat_gateway.protocol import engineio
from chat_gateway.protocol.messages import ProtocolError
from chat_gateway.protocol.wsframe import text_frame, text_payloads

__all__ = ["Phase", "PollingCarrier", "engineio_bad_request"]

_INBOX_MAX = 256
"""Packets waiting for the connection's task above which the session is cut (a flood)."""
_OK = HttpAnswer(200, b"ok", content_type="text/html")
_NOOP_ANSWER = HttpAnswer(200, engineio.NOOP, content_type=PAYLOAD_TYPE)


class Phase(Enum):
    """Where a long-polling session is in its life (it only moves forward)."""

    POLLING = "polling"
    """Packets travel in HTTP requests."""
    PROBING = "probing"
    """A WebSocket is probing the upgrade: packets still travel in HTTP requests, and a GET
    is answered with a noop at once."""
    MOVED = "moved"
    """The connection moved to the WebSocket; HTTP requests for the sid get 400."""
    GONE = "gone"
    """Closed (or its WebSocket is gone): the sid is forgotten."""


class PollingCarrier:
    """One long-polling session, a :class:`~chat_gateway.carrier.Carrier`."""

    def __init__(
        self, engine_sid: str, *, write_cap: int, on_gone: Callable[[PollingCarrier], None]
    ) -> None:
        self.engine_sid = engine_sid
        self._loop = asyncio.get_running_loop()
        self.phase = Phase.POLLING
        self.write_cap = write_cap
        self._on_gone: Callable[[PollingCarrier], None] | None = on_gone
        self._on_limit: Callable[[Limit], None] | None = None
        self._on_moved: Callable[[Carrier], None] | None = None
        self._inbox = Inbox(self._loop)
        self._queue = PollQueue(self._loop)
        self.closed_by_us = False
        self._client_closing = False
        """The client sent the Engine.IO close packet."""
        self._lost: asyncio.Future[None] = self._loop.create_future()
        self._forget: asyncio.Future[None] | None = None
        self.last_pong = self._loop.time()
        """Long-polling has no transport-level ping: Engine.IO pongs are packets."""
        self.close_code_received: int | None = None
        """Over polling the client says goodbye with an Engine.IO close packet instead."""

    @property
    def open(self) -> bool:
        return self.phase is Phase.POLLING or self.phase is Phase.PROBING

    @property
    def buffered(self) -> int:
        """Bytes of packets queued for the client and not collected yet."""
        return self._queue.size

    @property
    def held(self) -> bool:
        """Whether a GET is held, waiting for packets."""
        return self._queue.holding

    def on_limit(self, callback: Callable[[Limit], None]) -> None:
        self._on_limit = callback

    def on_moved(self, callback: Callable[[Carrier], None]) -> None:
        self._on_moved = callback

    # -- HTTP ---------------------------------------------------------------------------------

    def post(self, body: bytes) -> HttpAnswer:
        """The packets of a POST; ``ok``, or a 400 that ends the session (or, once the
        session moved to a WebSocket, a 400 that changes nothing)."""
        if not self.open:
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
        return _OK

    def poll(self, decorate: Decorate) -> HttpAnswer | asyncio.Future[HttpAnswer]:
        """A GET: the packets waiting, or a future of the next ones."""
        if self.phase is Phase.MOVED:
            return decorate(engineio_bad_request())
        if self._queue.holding:
            self.close(CLOSE_FLOOD, "overlapping polls")
            return engineio_bad_request()
        if self._queue:
            return decorate(self._queue.answer())
        if not self.open:
            return engineio_bad_request()
        if self.phase is Phase.PROBING:
            return decorate(_NOOP_ANSWER)
        return self._queue.hold(decorate)

    # -- the carrier ----------------------------------------------------------------------

    async def recv(self) -> str | bytes | None:
        """The next packet the client POSTed; ``None`` once the session is closing or has
        moved to its WebSocket (and every packet POSTed before has been read)."""
        while True:
            packet = self._inbox.take()
            if packet is not None:
                return packet
            if not self.open:
                return None
            await self._inbox.wait()

    def write(self, data: bytes) -> bool:
        """Queue the packets of pre-built text frames; ``False`` once closing."""
        return self._put(text_payloads(data))

    def send_text(self, payload: bytes) -> bool:
        return self._put([payload])

    def _put(self, packets: list[bytes]) -> bool:
        if not self.open:
            return False
        self._queue.put(packets)
        if self._queue.size > self.write_cap:
            self.cut("overflow", CLOSE_SLOW_CONSUMER, "slow consumer")
        return True

    def ping(self) -> None:
        """WebSocket pings do not exist here; Engine.IO pings are packets."""

    async def drain(self) -> None:
        """Nothing to wait for: packets wait until a poll takes them."""

    def close(self, code: int, reason: str = "", *, timeout_s: float | None = None) -> bool:
        """End the session now: a held GET gets what is queued and the close packet (a
        noop when the client closed); ``False`` when already closed or moved. (``code``,
        ``reason`` and ``timeout_s`` are the WebSocket's; nothing here waits for the client.)"""
        if not self.open:
            return False
        self.closed_by_us = True
        self._inbox.clear()
        if self._queue.holding:
            self._queue.put([engineio.NOOP if self._client_closing else engineio.CLOSE])
            self._queue.flush()
        self._gone()
        return True

    def cut(self, limit: Limit, code: int, reason: str, *, grace_s: float | None = None) -> None:
        on_limit = self._on_limit  # the close below lets go of it
        if self.close(code, reason, timeout_s=grace_s) and on_limit is not None:
            on_limit(limit)

    def abort(self) -> None:
        self._gone()

    def _gone(self) -> None:
        if self._lost.done():
            return
        self.phase = Phase.GONE
        self._queue.release(engineio_bad_request(), decorated=False)
        self._queue.take()
        self._inbox.clear()
        self._lost.set_result(None)
        self._inbox.wake()
        on_gone, self._on_gone = self._on_gone, None
        self._on_limit = self._on_moved = None
        if on_gone is not None:
            on_gone(self)

    async def wait_closed(self) -> None:
        """Wait until the session is gone (after a move: until its WebSocket is)."""
        await asyncio.shield(self._lost)

    # -- the upgrade ------------------------------------------------------------------------

    async def upgrade(self, ws: WebSocket, *, timeout_s: float) -> None:
        """Probe ``ws`` and move the connection onto it; see the module docstring."""
        if self.phase is not Phase.POLLING:
            ws.close(CLOSE_PROTOCOL_ERROR, "no session to upgrade")
            return
        self.phase = Phase.PROBING  # one probe at a time
        try:
            async with asyncio.timeout(timeout_s):
                if await ws.recv() != "2probe" or not self.open:
                    raise _UpgradeFailed
                ws.send_text(b"3probe")
                self._queue.release(_NOOP_ANSWER)
                if await ws.recv() != "5" or not self.open:
                    raise _UpgradeFailed
        except (TimeoutError, _UpgradeFailed):
            self._end_probe()
            ws.close(CLOSE_PROTOCOL_ERROR, "upgrade failed")
            return
        except asyncio.CancelledError:
            self._end_probe()
            ws.close(CLOSE_SERVICE_RESTART, "service restart")
            raise
        self._move(ws)

    def _end_probe(self) -> None:
        if self.phase is Phase.PROBING:
            self.phase = Phase.POLLING

    def _move(self, ws: WebSocket) -> None:
        """The connection moves to ``ws``: what was queued goes there first, then the
        connection is told; this carrier answers HTTP requests with 400 until ``ws`` is gone."""
        self._queue.release(_NOOP_ANSWER)
        if packets := self._queue.take():
            ws.write(b"".join(text_frame(packet) for packet in packets))
        self.phase = Phase.MOVED
        on_moved, self._on_moved, self._on_limit = self._on_moved, None, None
        if on_moved is not None:
            on_moved(ws)
        self._forget = asyncio.ensure_future(self._forget_when_closed(ws))
        self._inbox.wake()  # the reader gets what is left of the inbox, then None

    async def _forget_when_closed(self, ws: WebSocket) -> None:
        await ws.wait_closed()
        self._gone()


class _UpgradeFailed(Exception):
    """The WebSocket did not probe and upgrade as Engine.IO says."""


def engineio_bad_request() -> HttpAnswer:
    """The reference server's answer to a request it will not serve for a session."""
    return HttpAnswer(400, b'{"code":3,"message":"Bad request"}', content_type="application/json")
