"""One connected client, whatever protocol it speaks.

A :class:`Client` knows how to encode events and acks for its protocol and how to write a
frame without waiting (fan-out) or with flow control (replies). Fan-out frames arrive
pre-built (:mod:`chat_gateway.protocol.wsframe`) and collect in an outbox that is written
with one ``write`` per connection per event-loop iteration; a reply first writes the
outbox, so a client sees its frames in the order they were produced. It holds the connection's
identity: the session (id and resume token), the email fixed by the first join, the rooms
it is in, and per room the last seq written to it.

Closing a client never waits for the peer (:meth:`Client.close`): the WebSocket sends its
close frame and aborts the TCP connection if the peer has not finished within the close
timeout. A client cut for a limit (a write backlog, a flood) is counted and logged once.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from typing import Protocol

from chat_gateway.auth import Identity
from chat_gateway.closecodes import CLOSE_SLOW_CONSUMER
from chat_gateway.edge.polling import PollingConn
from chat_gateway.edge.websocket import Limit, WebSocket
from chat_gateway.metrics import FLOOD_CUTS, SLOW_CONSUMER_CUTS
from chat_gateway.offsets import offset_arg
from chat_gateway.protocol.wsframe import text_frame
from chat_gateway.ratelimit import TokenBucket
from chat_gateway.sessionids import new_session_id, new_token

__all__ = ["Client", "Encoder"]

_SLOW_CUT_GRACE_S = 1.0
"""How long a slow consumer gets to read its close frame before the TCP connection goes."""

_log = logging.getLogger("chat.gateway.client")


class Encoder(Protocol):
    """Encodes a server event: name, JSON payload, optional extra JSON arguments."""

    def __call__(
        self, name: str, payload_json: bytes, extra_args_json: tuple[bytes, ...] = ()
    ) -> bytes: ...


class Client:
    """Connection state shared by the Socket.IO and native transports."""

    __slots__ = ("_idle_waiter", "_in_flight", "_loop", "_outbox", "authenticated", "bucket", "closing",
                 "conn", "delivered_positions", "email", "encode_ack", "encode_event", "identity", "join_positions", "key",
                 "opened_at", "ping_frame", "protocol", "recovery", "remote", "rooms",
                 "session_id", "session_used", "sid", "taken_over", "token")  # fmt: skip

    def __init__(
        self,
        conn: WebSocket | PollingConn,
        *,
        protocol: str,
        remote: str,
        encode_event: Encoder,
        encode_ack: Callable[[int, bytes], bytes],
        bucket: TokenBucket,
        ping_frame: bytes | None,
    ) -> None:
        self.conn = conn
        self.remote = remote
        """The peer's address (for per-address limits)."""
        self.bucket = bucket
        self.ping_frame = ping_frame
        """The heartbeat's ping as a text frame (Engine.IO), or ``None`` for WebSocket pings."""
        self.identity: Identity | None = None
        """Who the token says this is (``None`` until authenticated, and in dev mode)."""
        self.authenticated = False
        self._loop = asyncio.get_running_loop()
        self._outbox: list[bytes] = []
        self.opened_at = self._loop.time()
        self.protocol = protocol
        self.encode_event = encode_event
        self.encode_ack = encode_ack
        self.key = secrets.token_hex(12)
        """This connection, and only it (``id`` moves to a new connection on resume)."""
        self.sid = secrets.token_hex(8)
        """The public socket id (Socket.IO ``sid``); kept across a resume."""
        self.session_id = new_session_id()
        self.token = new_token()
        self.email: str | None = None
        self.rooms: set[str] = set()
        self.delivered_positions: dict[str, int] = {}
        """room -> last seq written to this client (what its offsets report)."""
        self.join_positions: dict[str, int] = {}
        """room -> last seq of the join's (or resume's) history: the position on record."""
        self.recovery = protocol == "socketio"
        """Whether ``new_message`` events carry a resume offset (Socket.IO recovery)."""
        self.session_used = False
        """Whether the session service may hold state for this client (a join was tried)."""
        self.closing = False
        """No more events are taken (a close began, or shutdown is letting one finish)."""
        self.taken_over = False
        """A resume elsewhere took this connection's session: leave the session alone."""
        self._in_flight = 0
        self._idle_waiter: asyncio.Future[None] | None = None
        conn.on_limit(self._limit_hit)

    # What the event handlers, the resumer, the room hub and the server change about a
    # client, each in one place.

    def authenticate(self, identity: Identity | None, *, write_cap: int) -> None:
        """The connection is authenticated (as ``identity``, or in development mode): its
        write cap becomes the slow-consumer limit."""
        if identity is not None:
            self.identity = identity
        self.authenticated = True
        self.conn.write_cap = write_cap

    def begin_session(self) -> None:
        """The session service may hold state for this client from now on."""
        self.session_used = True

    def joined(self, room_id: str, *, email: str, join_position: int) -> None:
        """A join (or a resumed room) is on record, with every message up to ``join_position``."""
        self.email = email
        self.rooms.add(room_id)
        self.join_positions[room_id] = join_position

    def left(self, room_id: str) -> None:
        self.rooms.discard(room_id)

    def leave_all(self) -> list[str]:
        """Forget every room; the rooms it was in."""
        rooms = list(self.rooms)
        self.rooms.clear()
        self.join_positions.clear()
        return rooms

    def adopt(self, *, session_id: str, token: str, sid: str, email: str) -> None:
        """Resume: this connection carries on a dropped session."""
        self.session_id, self.token, self.sid = session_id, token, sid
        self.email = email
        self.session_used = True

    def start_afresh(self) -> None:
        """A resume was abandoned: a new session, no rooms, no email yet."""
        self.leave_all()
        self.session_id, self.token = new_session_id(), new_token()
        self.sid = secrets.token_hex(8)
        self.email = None
        self.session_used = False

    def reopen(self) -> None:
        """The client left the namespace and keeps the connection: it is as if newly
        opened (a new session; it must connect and authenticate again in time)."""
        self.start_afresh()
        self.identity, self.authenticated = None, False
        self.opened_at = self._loop.time()

    def take_over(self) -> None:
        """A resume elsewhere took this connection's session: leave the session alone."""
        self.taken_over = True

    def set_recovery(self, on: bool) -> None:
        """Whether ``new_message`` events carry a resume offset (Socket.IO recovery)."""
        self.recovery = on

    def start_position(self, room_id: str, seq: int, *, reset: bool = False) -> None:
        """The last seq of ``room_id`` this client has, as it joins (or, with ``reset``,
        resumes)."""
        if reset:
            self.delivered_positions[room_id] = seq
        else:
            self.delivered_positions.setdefault(room_id, seq)

    def advance(self, room_id: str, seq: int) -> None:
        """``seq`` of ``room_id`` is being written to this client."""
        self.delivered_positions[room_id] = seq

    def drop_position(self, room_id: str) -> None:
        self.delivered_positions.pop(room_id, None)

    def event_frame(
        self, event: str, data: bytes, *, room_id: str, seq: int | None, cache: dict[str, bytes]
    ) -> bytes:
        """The frame of one room event for this client, built once per kind of client
        (``cache``): per protocol, and for a Socket.IO client that recovers (its messages
        carry the offset of its positions) once per room when it is in that room alone,
        else its own."""
        if seq is not None:
            self.advance(room_id, seq)
        if seq is None or not self.recovery:
            key = self.protocol
        elif len(self.delivered_positions) == 1:
            key = "socketio+offset"
        else:
            return text_frame(
                self.encode_event(event, data, (offset_arg(self.delivered_positions),))
            )
        frame = cache.get(key)
        if frame is None:
            extra = (offset_arg(self.delivered_positions),) if key == "socketio+offset" else ()
            frame = cache[key] = text_frame(self.encode_event(event, data, extra))
        return frame

    def close(self, code: int, reason: str) -> None:
        """Stop taking events and close; returns at once (see the module docstring)."""
        self.closing = True
        self.flush()
        if self.conn.close(code, reason):
            _log.info("closing connection", extra={"client": self.sid, "code": code})

    async def shutdown(self, *, code: int, reason: str, timeout: float) -> None:
        """Stop taking events, let those in progress answer, then close with ``code``."""
        self.closing = True
        try:
            if self.busy:
                self._idle_waiter = self._loop.create_future()
                await asyncio.wait_for(self._idle_waiter, timeout)
        except TimeoutError:
            _log.warning("event still running at close", extra={"client": self.sid})
        self.close(code, reason)

    def ping(self) -> None:
        """One heartbeat ping, in the connection's protocol."""
        if self.ping_frame is None:
            self.conn.ping()
        else:
            self.write_frame(self.ping_frame)

    @property
    def busy(self) -> bool:
        """Events of this client are being handled (not all answered yet)."""
        return self._in_flight > 0

    def begin_event(self) -> None:
        self._in_flight += 1

    def end_event(self) -> None:
        """An event is answered: when it was the last, wake a :meth:`shutdown` waiting."""
        self._in_flight -= 1
        waiter = self._idle_waiter
        if not self._in_flight and waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def send(self, frame: bytes) -> None:
        """Write one text frame (replies and acks); wait while the transport is full.

        Only this connection's own task waits here, never a loop that serves many. A
        connection that is gone drops the frame: its task ends at its next read.
        """
        self.flush()
        self.conn.send_text(frame)
        await self.conn.drain()
        # Yield like a socket write would: a client whose events are answered without
        # waiting (a flood being refused) must not keep the others from running.
        await asyncio.sleep(0)

    def write_now(self, payload: bytes) -> bool:
        """Queue one text frame without waiting (fan-out)."""
        return self.write_frame(text_frame(payload))

    def write_frame(self, frame: bytes) -> bool:
        """Queue pre-built frame bytes; written at the end of this loop iteration."""
        if not self.conn.open:
            return False
        if not self._outbox:
            self._loop.call_soon(self.flush)
        self._outbox.append(frame)
        return True

    def flush(self) -> None:
        """Write the queued frames in one go (dropped once the connection is closing)."""
        if not self._outbox:
            return
        frames, self._outbox = self._outbox, []
        self.conn.write(frames[0] if len(frames) == 1 else b"".join(frames))

    def cut_slow(self) -> None:
        """Close a slow consumer (it reconnects and resyncs from history)."""
        self._outbox.clear()
        self.conn.cut("overflow", CLOSE_SLOW_CONSUMER, "slow consumer", grace_s=_SLOW_CUT_GRACE_S)

    def _limit_hit(self, limit: Limit) -> None:
        """The connection was cut for a limit: count it and say so, once."""
        self.closing = True
        self._outbox.clear()
        if limit == "overflow":
            _log.warning("slow consumer cut", extra={"client": self.sid})
            SLOW_CONSUMER_CUTS.inc()
        else:
            _log.warning("flooding connection cut", extra={"client": self.sid})
            FLOOD_CUTS.inc()
