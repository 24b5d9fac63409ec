"""One accepted WebSocket: websockets' sans-I/O protocol, driven by our own transport code.

The frame layer (parsing, masking, size limits, UTF-8 of close reasons, the closing
handshake, answering pings) is websockets' ``ServerProtocol``; this module only moves bytes
and decides *when* to read and *how long* to wait:

* **Reading is budgeted.** Bytes are fed to the protocol in slices of at most
  ``_SLICE`` bytes (:class:`~chat_gateway.edge.readgate.ReadGate`); each frame read is
  charged to the connection's :class:`~chat_gateway.edge.budget.ReadBudget`
  (:mod:`chat_gateway.edge.reassembly` counts the cost). Over budget, the transport is
  paused until the debt is paid (TCP flow control then holds the peer back); after
  sustained abuse the connection is cut. Messages wait in a bounded
  :class:`~chat_gateway.edge.inbox.Inbox` for the connection's own task, and a full inbox
  pauses reading too.
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
from collections.abc import Callable

from websockets.protocol import State
from websockets.server import ServerProtocol

from chat_gateway.carrier import Carrier, Limit
from chat_gateway.closecodes import CLOSE_FLOOD, CLOSE_INVALID_DATA, CLOSE_SLOW_CONSUMER
from chat_gateway.edge.budget import ReadBudget
from chat_gateway.edge.flow import Backpressure, abort_timer
from chat_gateway.edge.inbox import Inbox
from chat_gateway.edge.readgate import FULL, ReadGate
from chat_gateway.edge.reassembly import Reassembly
from chat_gateway.protocol.wsframe import text_frame

__all__ = ["WebSocket"]

_SLICE = 4096
"""Most bytes fed to the frame parser between two budget checks."""
_INBOX_HIGH = 64
"""Messages waiting for the connection's task above which reading pauses."""
_INBOX_LOW = 16
_INBOX_HIGH_BYTES = 256 * 1024
"""Bytes of messages waiting above which reading pauses (whatever their number)."""
_OVERFLOW_GRACE_S = 1.0
"""How long a connection cut for its write backlog gets to read the close frame."""


class WebSocket:
    """An open WebSocket on a transport, a :class:`~chat_gateway.carrier.Carrier`."""

    __slots__ = ("_abort", "_close_timeout", "_gate", "_inbox", "_loop",
                 "_lost", "_on_limit", "_proto", "_reassembly", "_transport", "closed_by_us", "flow",
                 "last_pong", "write_cap")  # fmt: skip

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
        self._gate = ReadGate(transport, self._receive, slice_size=_SLICE, budget=budget)
        self._reassembly = Reassembly()
        self._close_timeout = close_timeout_s
        self.write_cap = write_cap
        """Bytes queued for the peer above which it is cut (raised once it authenticates)."""
        self._inbox = Inbox(self._loop)
        self.flow = Backpressure(self._loop)
        """The transport's flow control (paused and resumed by the TCP connection)."""
        self._abort = abort_timer(self._loop, transport)
        self._lost: asyncio.Future[None] = self._loop.create_future()
        self.closed_by_us = False
        self._on_limit: Callable[[Limit], None] | None = None
        self.last_pong = self._loop.time()
        """When the peer last answered a WebSocket ping."""

    # -- state ------------------------------------------------------------------------------

    @property
    def open(self) -> bool:
        """Whether frames can still be sent (no close sent or received, not lost)."""
        return self._proto.state is State.OPEN and not self._lost.done()

    @property
    def buffered(self) -> int:
        """Bytes queued for the peer and not yet taken by the kernel."""
        return self._transport.get_write_buffer_size()

    @property
    def close_code_received(self) -> int | None:
        rcvd = self._proto.close_rcvd
        return rcvd.code if rcvd is not None else None

    def on_limit(self, callback: Callable[[Limit], None]) -> None:
        self._on_limit = callback

    def on_moved(self, callback: Callable[[Carrier], None]) -> None:
        """A WebSocket never moves to another carrier."""

    # -- inbound ----------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Bytes from the transport."""
        self._gate.feed(data)

    def feed_eof(self) -> None:
        self._proto.receive_eof()
        self._after_receive()

    def _receive(self, chunk: bytes) -> None:
        self._proto.receive_data(chunk)
        self._after_receive()

    def _after_receive(self) -> None:
        read = self._reassembly.read(self._proto.events_received())
        self._flush_protocol()
        for data, text in read.messages:
            self._deliver(data, text)
        if read.ponged:
            self.last_pong = self._loop.time()
        if not self.open:
            self._closing_started()
        if self._gate.charge(read.cost):
            self.cut("flood", CLOSE_FLOOD, "too many frames")

    def _deliver(self, data: bytes, text: bool) -> None:
        if self.closed_by_us:
            return  # RFC 6455 7.1.1: after sending a close frame, incoming data is discarded
        try:
            self._inbox.put(data.decode() if text else data)
        except UnicodeDecodeError:
            self._fail(CLOSE_INVALID_DATA, "invalid UTF-8")
            return
        if len(self._inbox) >= _INBOX_HIGH or self._inbox.size >= _INBOX_HIGH_BYTES:
            self._gate.pause(FULL)

    async def recv(self) -> str | bytes | None:
        """The next message (text as ``str``); ``None`` once no more can come."""
        inbox = self._inbox
        while True:
            message = inbox.take()
            if message is not None:
                low = len(inbox) <= _INBOX_LOW and inbox.size < _INBOX_HIGH_BYTES // 4
                if low and self._gate.paused_for(FULL):
                    self._gate.unpause(FULL)
                return message
            if not self.open:
                return None
            await inbox.wait()

    # -- outbound ---------------------------------------------------------------------------

    def write(self, data: bytes) -> bool:
        """Queue pre-built frame bytes; ``False`` (nothing written) once closing."""
        if not self.open:
            return False
        self._transport.write(data)
        self._check_backlog()
        return True

    def send_text(self, payload: bytes) -> bool:
        return self.write(text_frame(payload))

    def ping(self) -> None:
        """Send a WebSocket ping (its pong updates :attr:`last_pong`)."""
        if self.open:
            self._proto.send_ping(b"")
            self._flush_protocol()

    async def drain(self) -> None:
        """Wait until the transport takes writes again (or the connection is gone)."""
        await self.flow.drain()

    def _flush_protocol(self) -> None:
        for data in self._proto.data_to_send():
            if data:
                self._transport.write(data)
            else:  # the protocol is done: close the TCP connection after what is queued
                self._transport.close()
        self._check_backlog()

    def _check_backlog(self) -> None:
        if self._transport.get_write_buffer_size() > self.write_cap:
            self.cut("overflow", CLOSE_SLOW_CONSUMER, "slow consumer", grace_s=_OVERFLOW_GRACE_S)

    # -- closing ----------------------------------------------------------------------------

    def close(self, code: int, reason: str = "", *, timeout_s: float | None = None) -> bool:
        """Start the closing handshake; abort the TCP connection if it is not over within
        ``timeout_s`` (the configured close timeout by default). Returns at once; ``False``
        when a close had already begun."""
        if not self.open:
            return False
        self.closed_by_us = True
        self._proto.send_close(code, reason)
        self._flush_protocol()
        self._closing_started(timeout_s)
        return True

    def _fail(self, code: int, reason: str) -> None:
        """Close at once without waiting for the peer's close frame (a broken stream)."""
        if self.open:
            self.closed_by_us = True
            self._proto.fail(code, reason)
            self._flush_protocol()
        self._closing_started()

    def cut(self, limit: Limit, code: int, reason: str, *, grace_s: float | None = None) -> None:
        """Close for a limit hit (once: the :meth:`on_limit` callback hears of it)."""
        if not self.close(code, reason, timeout_s=grace_s):
            return
        self._inbox.clear()
        if self._on_limit is not None:
            self._on_limit(limit)

    def abort(self) -> None:
        self._transport.abort()

    def _closing_started(self, timeout_s: float | None = None) -> None:
        if not self._lost.done():
            self._abort.arm(self._close_timeout if timeout_s is None else timeout_s, keep=True)
        self._inbox.wake()

    def lost(self) -> None:
        """The transport is gone (from ``connection_lost``)."""
        self._proto.receive_eof()
        self._proto.events_received()
        self._proto.data_to_send()
        self._abort.cancel()
        if not self._lost.done():
            self._lost.set_result(None)
        self._gate.stop()
        self._reassembly.reset()
        self._on_limit = None  # the client refers back to us: no cycle outlives the TCP
        if self.closed_by_us:
            self._inbox.clear()  # nobody will answer these (the client resends on resume)
        self.flow.resume()
        self._inbox.wake()

    async def wait_closed(self) -> None:
        """Wait until the TCP connection is gone."""
        await asyncio.shield(self._lost)
