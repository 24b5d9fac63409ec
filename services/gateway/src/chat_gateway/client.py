"""One connected client, whatever protocol it speaks.

A :class:`Client` knows how to encode events and acks for its protocol and how to write a
frame without waiting (fan-out) or with flow control (replies). Fan-out frames arrive
pre-built (:mod:`chat_gateway.protocol.wsframe`) and collect in an outbox that is written
with one ``write`` per connection per event-loop iteration; a reply first writes the
outbox, so a client sees its frames in the order they were produced. It holds the connection's
identity: the session (id and resume token), the email fixed by the first join, the rooms
it is in, and per room the last seq written to it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from typing import Protocol

from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

from chat_gateway.auth import Identity
from chat_gateway.metrics import SLOW_CONSUMER_CUTS
from chat_gateway.offsets import new_session_id, new_token
from chat_gateway.protocol.wsframe import text_frame
from chat_gateway.ratelimit import TokenBucket

__all__ = ["CLOSE_SLOW_CONSUMER", "Client", "Encoder"]

CLOSE_SLOW_CONSUMER = 4008
"""Close code for a client that cannot keep up with its rooms (it should reconnect)."""

_DIRECT_WRITE_LIMIT = 32 * 1024
"""A reply is written at once while less than this is buffered (websockets' default
high-water mark); above it, it waits for the buffer to drain like any ``ws.send``."""

_log = logging.getLogger("chat.gateway.client")


class Encoder(Protocol):
    """Encodes a server event: name, JSON payload, optional extra JSON arguments."""

    def __call__(
        self, name: str, payload_json: bytes, extra_args_json: tuple[bytes, ...] = ()
    ) -> bytes: ...


class Client:
    """Connection state shared by the Socket.IO and native transports."""

    __slots__ = ("_idle_waiter", "_loop", "_outbox", "authenticated", "bucket", "busy", "closing",
                 "email", "encode_ack", "encode_event", "floors", "id", "identity", "key",
                 "last_pong", "opened_at", "positions", "protocol", "recovery", "rooms",
                 "session_id", "session_used", "slow_limit", "taken_over", "token", "ws")  # fmt: skip

    def __init__(
        self,
        ws: ServerConnection,
        *,
        protocol: str,
        encode_event: Encoder,
        encode_ack: Callable[[int, bytes], bytes],
        slow_limit: int,
        bucket: TokenBucket,
    ) -> None:
        self.ws = ws
        self.bucket = bucket
        self.identity: Identity | None = None
        """Who the token says this is (``None`` until authenticated, and in dev mode)."""
        self.authenticated = False
        self._loop = asyncio.get_running_loop()
        self._outbox: list[bytes] = []
        self.opened_at = self._loop.time()
        self.protocol = protocol
        self.encode_event = encode_event
        self.encode_ack = encode_ack
        self.slow_limit = slow_limit
        self.key = secrets.token_hex(12)
        """This connection, and only it (``id`` moves to a new connection on resume)."""
        self.id = secrets.token_hex(8)
        """The public socket id (Socket.IO ``sid``); kept across a resume."""
        self.session_id = new_session_id()
        self.token = new_token()
        self.email: str | None = None
        self.rooms: set[str] = set()
        self.positions: dict[str, int] = {}
        """room -> last seq written to this client (what its offsets report)."""
        self.floors: dict[str, int] = {}
        """room -> last seq of the join's (or resume's) history: the position on record."""
        self.recovery = protocol == "socketio"
        """Whether ``new_message`` events carry a resume offset (Socket.IO recovery)."""
        self.session_used = False
        """Whether the session service may hold state for this client (a join was tried)."""
        self.closing = False
        self.taken_over = False
        """A resume elsewhere took this connection's session: leave the session alone."""
        self.busy = False
        """An event of this client is being handled (its answer is not written yet)."""
        self._idle_waiter: asyncio.Future[None] | None = None
        self.last_pong = self.opened_at

    async def shutdown(self, *, code: int, reason: str, timeout: float) -> None:
        """Stop taking events, let the one in progress answer, then close with ``code``."""
        self.closing = True
        try:
            if self.busy:
                self._idle_waiter = self._loop.create_future()
                await asyncio.wait_for(self._idle_waiter, timeout)
        except TimeoutError:
            _log.warning("event still running at close", extra={"client": self.id})
        self.flush()
        await self.ws.close(code, reason)

    def begin_event(self) -> None:
        self.busy = True

    def end_event(self) -> None:
        """The event is answered: wake a :meth:`shutdown` waiting for it."""
        self.busy = False
        waiter = self._idle_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def send(self, frame: bytes) -> None:
        """Write one text frame, waiting for buffer space (replies and acks)."""
        self.flush()
        ws = self.ws
        transport = ws.transport
        if (
            ws.protocol.state is State.OPEN
            and transport is not None
            and transport.get_write_buffer_size() < _DIRECT_WRITE_LIMIT
        ):
            transport.write(text_frame(frame))
            # Yield like ws.send would: a client whose events are answered without waiting
            # (a flood being refused) must not keep the others from running.
            await asyncio.sleep(0)
            return
        await ws.send(frame, text=True)  # flow control, or the ConnectionClosed to raise

    def write_now(self, payload: bytes) -> bool:
        """Queue one text frame without waiting (fan-out)."""
        return self.write_frame(text_frame(payload))

    def write_frame(self, frame: bytes) -> bool:
        """Queue pre-built frame bytes; cut the client if it is too far behind."""
        ws = self.ws
        transport = ws.transport
        if transport is None or transport.get_write_buffer_size() > self.slow_limit:
            self.cut_slow()
            return False
        if ws.protocol.state is not State.OPEN:
            return False
        if not self._outbox:
            self._loop.call_soon(self.flush)
        self._outbox.append(frame)
        return True

    def flush(self) -> None:
        """Write the queued frames in one go (a no-op once the connection is closing)."""
        if not self._outbox:
            return
        frames, self._outbox = self._outbox, []
        transport = self.ws.transport
        if self.ws.protocol.state is State.OPEN and not transport.is_closing():
            transport.write(frames[0] if len(frames) == 1 else b"".join(frames))

    def cut_slow(self) -> None:
        """Close a slow consumer; it reconnects and resyncs from history."""
        _log.warning("slow consumer cut", extra={"client": self.id})
        SLOW_CONSUMER_CUTS.inc()
        transport = self.ws.transport
        if transport is None or transport.is_closing():
            return
        # Queue the close frame behind what is buffered, then give the client a second to
        # read it before the TCP connection is aborted.
        self.closing = True
        self._outbox.clear()
        self.ws.protocol.fail(CLOSE_SLOW_CONSUMER, "slow consumer")
        self.ws.send_data()
        asyncio.get_running_loop().call_later(1.0, transport.abort)
