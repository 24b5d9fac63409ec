"""One connected client, whatever protocol it speaks.

A :class:`Client` knows how to encode events and acks for its protocol and how to write a
frame without waiting (fan-out) or with flow control (replies). It holds the connection's
identity (email, fixed by the first join) and the rooms it is in.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable

from websockets.asyncio.connection import broadcast
from websockets.asyncio.server import ServerConnection

__all__ = ["CLOSE_SLOW_CONSUMER", "Client", "Encoder"]

CLOSE_SLOW_CONSUMER = 4008
"""Close code for a client that cannot keep up with its rooms (it should reconnect)."""

_log = logging.getLogger("chat.gateway.client")

Encoder = Callable[[str, bytes], bytes]


class Client:
    """Connection state shared by the Socket.IO and native transports."""

    __slots__ = ("closing", "email", "encode_ack", "encode_event", "id", "idle", "last_pong",
                 "protocol", "rooms", "session_id", "session_used", "slow_limit", "ws")  # fmt: skip

    def __init__(
        self,
        ws: ServerConnection,
        *,
        protocol: str,
        encode_event: Encoder,
        encode_ack: Callable[[int, bytes], bytes],
        slow_limit: int,
    ) -> None:
        self.ws = ws
        self.protocol = protocol
        self.encode_event = encode_event
        self.encode_ack = encode_ack
        self.slow_limit = slow_limit
        self.id = secrets.token_hex(8)
        self.session_id = secrets.token_hex(16)
        self.email: str | None = None
        self.rooms: set[str] = set()
        self.session_used = False
        """Whether the session service may hold state for this client (a join was tried)."""
        self.closing = False
        self.idle = asyncio.Event()
        self.idle.set()
        self.last_pong = asyncio.get_running_loop().time()

    async def shutdown(self, *, code: int, reason: str, timeout: float) -> None:
        """Stop taking events, let the one in progress answer, then close with ``code``."""
        self.closing = True
        try:
            await asyncio.wait_for(self.idle.wait(), timeout)
        except TimeoutError:
            _log.warning("event still running at close", extra={"client": self.id})
        await self.ws.close(code, reason)

    async def send(self, frame: bytes) -> None:
        """Write one text frame, waiting for buffer space (replies and acks)."""
        await self.ws.send(frame, text=True)

    def write_now(self, frame: bytes) -> bool:
        """Write without waiting (fan-out); cut the client if it is too far behind."""
        transport = self.ws.transport
        if transport is None or transport.get_write_buffer_size() > self.slow_limit:
            self.cut_slow()
            return False
        broadcast([self.ws], frame, text=True)
        return True

    def cut_slow(self) -> None:
        """Close a slow consumer; it reconnects and resyncs from history."""
        _log.warning("slow consumer cut", extra={"client": self.id})
        transport = self.ws.transport
        if transport is None or transport.is_closing():
            return
        # Queue the close frame behind what is buffered, then give the client a second to
        # read it before the TCP connection is aborted.
        self.ws.protocol.fail(CLOSE_SLOW_CONSUMER, "slow consumer")
        self.ws.send_data()
        asyncio.get_running_loop().call_later(1.0, transport.abort)
