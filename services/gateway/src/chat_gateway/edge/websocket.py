"""One accepted WebSocket: websockets' sans-I/O protocol, driven by our own transport code.

The frame layer (parsing, masking, size limits, UTF-8 of close reasons, the closing
handshake, answering pings) is websockets' ``ServerProtocol``; this module only moves bytes
and decides *when* to read and *how long* to wait:

* **Reading is budgeted.** Bytes are fed to the protocol in slices of at most
  ``_SLICE`` bytes; each frame read is charged to the connection's
  :class:`~chat_gateway.edge.budget.ReadBudget` (one token, plus one per 8 KiB of payload). Over budget, the transport is paused until
  the debt is paid (TCP flow control then holds the peer back); after sustained abuse the
  connection is cut. Messages wait in a bounded inbox for the connection's own task, and a
  full inbox pauses reading too.
* **Writing never waits.** :meth:`WebSocket.write` and :meth:`WebSocket.send_text` hand
  bytes to the transport at once; the caller decides whether to :meth:`drain`. Anything
  that leaves more than ``write_cap`` bytes queued (fan-out, replies, or the pongs of a
  peer that pings and never reads) cuts the connection.
* **Closing never waits.** :meth:`WebSocket.close` sends the close frame and arms a
  deadline; when the peer has not completed the handshake and gone by then (a phone that
  lost its network sends no FIN), the TCP connection is aborted. Nobody ``await``\\ s a
  peer's goodbye; :meth:`wait_closed` is there for whoever wants to.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

from chat_gateway.carrier import Carrier, Limit
from chat_gateway.closecodes import CLOSE_FLOOD, CLOSE_INVALID_DATA, CLOSE_SLOW_CONSUMER
from chat_gateway.edge.budget import ReadBudget
from chat_gateway.edge.wakeup import Wakeup
from chat_gateway.metrics import CLOSE_ABORTS, READ_PAUSES
from chat_gateway.protocol.wsframe import text_frame

__all__ = ["WebSocket"]

_SLICE = 4096
"""Most bytes fed to the frame parser between two budget checks."""
_BYTES_PER_TOKEN = 8192
"""A frame costs one token of the read budget, plus one per this many payload bytes."""
_INBOX_HIGH = 64
"""Messages waiting for the connection's task above which reading pauses."""
_INBOX_LOW = 16
_INBOX_HIGH_BYTES = 256 * 1024
"""Bytes of messages waiting above which reading pauses (whatever their number)."""
_PAUSED_BY_BUDGET = 1
_PAUSED_BY_INBOX = 2
_OVERFLOW_GRACE_S = 1.0
"""How long a connection cut for its write backlog gets to read the close frame."""


class WebSocket:
    """An open WebSocket on a transport, a :class:`~chat_gateway.carrier.Carrier`; see the
    module docstring."""

    __slots__ = ("_budget", "_close_timeout", "_closed_by_us", "_drain_waiter", "_fragments",
                 "_fragments_text", "_inbox", "_inbox_bytes", "_loop", "_lost", "_offset", "_on_limit", "_paused", "_pending",
                 "_proto", "_timer", "_transport", "_wakeup", "_write_cap", "last_pong")  # fmt: skip

    def __init__(
        self,
        transport: asyncio.Transport,
        *,
        max_size: int,
        budget: ReadBudget | None,
        close_timeout_s: float,
        write_cap: int,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._transport = transport
        self._proto = ServerProtocol(state=State.OPEN, max_size=max_size)
        self._budget = budget
        self._close_timeout = close_timeout_s
        self._write_cap = write_cap
        self._inbox: deque[str | bytes] = deque()
        self._inbox_bytes = 0
        self._wakeup = Wakeup(self._loop)
        self._drain_waiter: asyncio.Future[None] | None = None
        self._pending = b""
        self._offset = 0
        self._paused = 0
        self._fragments: list[bytes] | None = None
        self._fragments_text = False
        self._timer: asyncio.TimerHandle | None = None
        self._lost: asyncio.Future[None] = self._loop.create_future()
        self._closed_by_us = False
        self._on_limit: Callable[[Limit], None] | None = None
        self.last_pong = self._loop.time()
        """When the peer last answered a WebSocket ping (set by the owner's own pongs too)."""

    # -- state ------------------------------------------------------------------------------

    @property
    def open(self) -> bool:
        """Whether frames can still be sent (no close sent or received, not lost)."""
        return self._proto.state is State.OPEN and not self._lost.done()

    @property
    def closing(self) -> bool:
        """Whether a close began (by either side) or the connection is gone."""
        return not self.open

    @property
    def buffered(self) -> int:
        """Bytes queued for the peer and not yet taken by the kernel."""
        return self._transport.get_write_buffer_size()

    @property
    def close_code_received(self) -> int | None:
        """The code of the peer's close frame, if one arrived."""
        rcvd = self._proto.close_rcvd
        return rcvd.code if rcvd is not None else None

    @property
    def write_cap(self) -> int:
        return self._write_cap

    @write_cap.setter
    def write_cap(self, value: int) -> None:
        """Raise (or lower) the backlog bound, e.g. once the peer has authenticated."""
        self._write_cap = value

    @property
    def closed_by_us(self) -> bool:
        return self._closed_by_us

    def on_limit(self, callback: Callable[[Limit], None]) -> None:
        """Call ``callback`` once if the connection is cut for a flood or a write backlog."""
        self._on_limit = callback

    def on_moved(self, callback: Callable[[Carrier], None]) -> None:
        """A WebSocket never moves to another carrier."""

    # -- inbound ----------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Bytes from the transport."""
        if self._pending:
            self._pending = self._pending[self._offset :] + data
            self._offset = 0
        else:
            self._pending, self._offset = data, 0
        self._pump()

    def _pump(self) -> None:
        while self._offset < len(self._pending) and not self._paused:
            if not self._offset and len(self._pending) <= _SLICE:
                chunk, self._pending = self._pending, b""
            else:
                end = self._offset + _SLICE
                chunk = self._pending[self._offset : end]
                self._offset = end
            self._proto.receive_data(chunk)
            self._after_receive()
        if self._offset >= len(self._pending):
            self._pending, self._offset = b"", 0

    def feed_eof(self) -> None:
        self._proto.receive_eof()
        self._after_receive()

    def _after_receive(self) -> None:
        frames = self._proto.events_received()
        self._flush_protocol()
        cost = 0
        for frame in frames:
            if not isinstance(frame, Frame):
                continue  # handshake events: not in this (already open) protocol
            cost += 1 + len(frame.data) // _BYTES_PER_TOKEN
            opcode = frame.opcode
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                if frame.fin:
                    self._deliver(bytes(frame.data), opcode is Opcode.TEXT)
                else:
                    self._fragments = [bytes(frame.data)]
                    self._fragments_text = opcode is Opcode.TEXT
            elif opcode is Opcode.CONT and self._fragments is not None:
                self._fragments.append(bytes(frame.data))
                if frame.fin:
                    parts, self._fragments = self._fragments, None
                    self._deliver(b"".join(parts), self._fragments_text)
            elif opcode is Opcode.PONG:
                self.last_pong = self._loop.time()
        if not self.open:
            self._closing_started()
        if cost and self._budget is not None:
            verdict = self._budget.charge(cost)
            if verdict.cut:
                self.cut("flood", CLOSE_FLOOD, "too many frames")
            elif verdict.pause_s > 0:
                READ_PAUSES.inc()
                self._pause(_PAUSED_BY_BUDGET)
                self._loop.call_later(verdict.pause_s, self._unpause, _PAUSED_BY_BUDGET)

    def _deliver(self, data: bytes, text: bool) -> None:
        if self._closed_by_us:
            return  # RFC 6455 7.1.1: after sending a close frame, incoming data is discarded
        if text:
            try:
                message: str | bytes = data.decode()
            except UnicodeDecodeError:
                self._fail(CLOSE_INVALID_DATA, "invalid UTF-8")
                return
        else:
            message = data
        self._inbox.append(message)
        self._inbox_bytes += len(message)  # characters of text: close enough for a bound
        if len(self._inbox) >= _INBOX_HIGH or self._inbox_bytes >= _INBOX_HIGH_BYTES:
            self._pause(_PAUSED_BY_INBOX)
        self._wakeup.wake()

    async def recv(self) -> str | bytes | None:
        """The next message (text as ``str``); ``None`` once no more can come."""
        while True:
            if self._inbox:
                message = self._inbox.popleft()
                self._inbox_bytes -= len(message)
                if (
                    self._paused & _PAUSED_BY_INBOX
                    and len(self._inbox) <= _INBOX_LOW
                    and self._inbox_bytes < _INBOX_HIGH_BYTES // 4
                ):
                    self._unpause(_PAUSED_BY_INBOX)
                return message
            if not self.open:
                return None
            await self._wakeup.wait()

    def _pause(self, reason: int) -> None:
        if not self._paused and not self._transport.is_closing():
            self._transport.pause_reading()
        self._paused |= reason

    def _unpause(self, reason: int) -> None:
        if not self._paused & reason:
            return
        self._paused &= ~reason
        if self._paused or self._lost.done():
            return
        self._pump()
        if not self._paused and not self._transport.is_closing():
            self._transport.resume_reading()

    # -- outbound ---------------------------------------------------------------------------

    def write(self, data: bytes) -> bool:
        """Queue pre-built frame bytes; ``False`` (nothing written) once closing."""
        if not self.open:
            return False
        self._transport.write(data)
        if self._transport.get_write_buffer_size() > self._write_cap:
            self.cut("overflow", CLOSE_SLOW_CONSUMER, "slow consumer", grace_s=_OVERFLOW_GRACE_S)
        return True

    def send_text(self, payload: bytes) -> bool:
        """Queue one text frame carrying ``payload``."""
        return self.write(text_frame(payload))

    def ping(self) -> None:
        """Send a WebSocket ping (its pong updates :attr:`last_pong`)."""
        if self.open:
            self._proto.send_ping(b"")
            self._flush_protocol()

    async def drain(self) -> None:
        """Wait until the transport takes writes again (or the connection is gone)."""
        if self._drain_waiter is None:
            return
        await asyncio.shield(self._drain_waiter)

    def pause_writing(self) -> None:
        if self._drain_waiter is None:
            self._drain_waiter = self._loop.create_future()

    def resume_writing(self) -> None:
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _flush_protocol(self) -> None:
        for data in self._proto.data_to_send():
            if data:
                self._transport.write(data)
            else:  # the protocol is done: close the TCP connection after what is queued
                self._transport.close()
        if self._transport.get_write_buffer_size() > self._write_cap:
            self.cut("overflow", CLOSE_SLOW_CONSUMER, "slow consumer", grace_s=_OVERFLOW_GRACE_S)

    # -- closing ----------------------------------------------------------------------------

    def close(self, code: int, reason: str = "", *, timeout_s: float | None = None) -> bool:
        """Start the closing handshake; abort the TCP connection if it is not over within
        ``timeout_s`` (the configured close timeout by default). Returns at once; ``False``
        when a close had already begun."""
        if not self.open:
            return False
        self._closed_by_us = True
        self._proto.send_close(code, reason)
        self._flush_protocol()
        self._closing_started(timeout_s)
        return True

    def _fail(self, code: int, reason: str) -> None:
        """Close at once without waiting for the peer's close frame (a broken stream)."""
        if self.open:
            self._closed_by_us = True
            self._proto.fail(code, reason)
            self._flush_protocol()
        self._closing_started()

    def cut(self, limit: Limit, code: int, reason: str, *, grace_s: float | None = None) -> None:
        """Close for a limit hit (once: the :meth:`on_limit` callback hears of it)."""
        if not self.close(code, reason, timeout_s=grace_s):
            return
        self._inbox.clear()
        self._inbox_bytes = 0
        if self._on_limit is not None:
            self._on_limit(limit)

    def abort(self) -> None:
        """Drop the TCP connection now."""
        self._transport.abort()

    def _closing_started(self, timeout_s: float | None = None) -> None:
        if self._timer is None and not self._lost.done():
            delay = self._close_timeout if timeout_s is None else timeout_s
            self._timer = self._loop.call_later(delay, self._deadline_passed)
        self._wakeup.wake()

    def _deadline_passed(self) -> None:
        self._timer = None
        if not self._lost.done():
            CLOSE_ABORTS.inc()
            self._transport.abort()

    def lost(self) -> None:
        """The transport is gone (from ``connection_lost``)."""
        self._proto.receive_eof()
        self._proto.events_received()
        self._proto.data_to_send()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._lost.done():
            self._lost.set_result(None)
        self._pending, self._offset = b"", 0
        self._fragments = None
        self._on_limit = None  # the client refers back to us: no cycle outlives the TCP
        if self._closed_by_us:
            self._inbox.clear()  # nobody will answer these (the client resends on resume)
            self._inbox_bytes = 0
        self.resume_writing()
        self._wakeup.wake()

    async def wait_closed(self) -> None:
        """Wait until the TCP connection is gone."""
        await asyncio.shield(self._lost)
