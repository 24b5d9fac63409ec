"""One connected client, whatever protocol it speaks and whatever carries it.

A :class:`Client` writes through its :class:`~chat_gateway.carrier.Carrier` (it knows no
concrete one): fan-out frames arrive pre-built (:mod:`chat_gateway.protocol.wsframe`) and
collect in an outbox written with one ``write`` per connection per event-loop iteration; a
reply first writes the outbox, so a client sees its frames in the order they were produced.
When a long-polling session upgrades, its carrier hands the WebSocket over
(:meth:`Client.rebind`): writes go there at once, reads once the old carrier has given
every packet it still held. :attr:`Client.queued` is what the peer has not taken yet (the
carrier's backlog and the outbox): the writer weighs a room frame against it
(:mod:`chat_gateway.connection.priority`); a client behind keeps its
:class:`~chat_gateway.connection.catchup.CatchUp` in :attr:`Client.catchup`.

Its lifecycle is one :class:`State`; what it knows of its session is a
:class:`~chat_gateway.sessionids.SessionRef`, of its rooms a
:class:`~chat_gateway.connection.membership.Membership`.

Closing a client never waits for the peer (:meth:`Client.close`): the carrier sends its
close and aborts the connection if the peer has not finished within the close timeout. A
client cut for a limit (a write backlog, a flood) is counted and logged once.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from enum import Enum
from typing import Any, Protocol

from chat_gateway.auth import Identity
from chat_gateway.carrier import Carrier, Limit
from chat_gateway.closecodes import CLOSE_SLOW_CONSUMER
from chat_gateway.connection.catchup import CatchUp
from chat_gateway.connection.membership import Membership
from chat_gateway.metrics import FLOOD_CUTS, SLOW_CONSUMER_CUTS
from chat_gateway.ratelimit import TokenBucket
from chat_gateway.sessionids import SessionRef

__all__ = ["Client", "Encoder", "State", "cut_slow"]

_SLOW_CUT_GRACE_S = 1.0
"""How long a slow consumer gets to read its close frame before the TCP connection goes."""

_log = logging.getLogger("chat.gateway.client")


class Encoder(Protocol):
    """Encodes a server event: name, JSON payload, optional extra JSON arguments."""

    def __call__(
        self, name: str, payload_json: bytes, extra_args_json: tuple[bytes, ...] = ()
    ) -> bytes: ...


class State(Enum):
    """A connection's lifecycle. It only moves forward, but for a Socket.IO client that
    leaves the namespace and keeps its connection: it starts over at ``CONNECTING``."""

    CONNECTING = "connecting"
    """Not authenticated yet (Socket.IO: its namespace CONNECT not answered)."""
    OPEN = "open"
    """Authenticated (or in development mode): its events are handled."""
    CLOSING = "closing"
    """A close began, or shutdown is letting its events answer: no new event is taken."""


class Client:
    """Connection state shared by the Socket.IO and native protocols."""

    __slots__ = ("_engine_pong", "_idle_waiter", "_in_flight", "_loop", "_outbox", "_outbox_size",
                 "_reading", "bucket", "carrier", "catchup", "connection_key", "encode_ack",
                 "encode_event", "identity", "opened_at", "ping_frame", "protocol", "remote",
                 "rooms", "session", "state")  # fmt: skip

    def __init__(
        self,
        carrier: Carrier,
        *,
        protocol: str,
        remote: str,
        encode_event: Encoder,
        encode_ack: Callable[[int, bytes], bytes],
        bucket: TokenBucket,
        ping_frame: bytes | None,
        offsets: bool = False,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self.carrier = carrier
        self._reading = carrier
        self.protocol = protocol
        self.remote = remote
        """The peer's address (for per-address limits)."""
        self.encode_event = encode_event
        self.encode_ack = encode_ack
        self.bucket = bucket
        self.ping_frame = ping_frame
        """The heartbeat's ping as a text frame (Engine.IO), or ``None`` for carrier pings."""
        self.connection_key = secrets.token_hex(12)
        """This connection, and only it (the session moves to a new connection on resume)."""
        self.identity: Identity | None = None
        """Who the token says this is (``None`` until authenticated, and in dev mode)."""
        self.state = State.CONNECTING
        self.session = SessionRef()
        self.rooms = Membership(offsets=offsets)
        self.opened_at = self._engine_pong = self._loop.time()
        self._outbox: list[bytes] = []
        self._outbox_size = 0
        self.catchup: CatchUp[Any] | None = None
        """Rooms behind and presence held, while past the soft limit (else ``None``)."""
        self._in_flight = 0
        self._idle_waiter: asyncio.Future[None] | None = None
        carrier.on_limit(self._limit_hit)
        carrier.on_moved(self.rebind)

    # -- the carrier ------------------------------------------------------------------------

    def rebind(self, carrier: Carrier) -> None:
        """The connection moved to ``carrier`` (a long-polling session upgraded): it is
        written there from now on, with the same cap, and read there once the old carrier
        has given what it still held."""
        carrier.write_cap = self.carrier.write_cap
        self.carrier = carrier
        carrier.on_limit(self._limit_hit)
        carrier.on_moved(self.rebind)

    async def recv(self) -> str | bytes | None:
        """The client's next message; ``None`` once no more can come."""
        while True:
            reading = self._reading
            message = await reading.recv()
            if message is not None or reading is self.carrier:
                return message
            self._reading = self.carrier

    @property
    def last_pong(self) -> float:
        """When the client last answered a ping, of Engine.IO or of the carrier."""
        return max(self._engine_pong, self.carrier.last_pong)

    def heard_pong(self) -> None:
        """An Engine.IO pong arrived."""
        self._engine_pong = self._loop.time()

    @property
    def user_id(self) -> str | None:
        """Who this is to the stores and the bus: the token's subject, or in development
        mode the email the connection gave (``None`` until it gave one)."""
        return self.identity.subject if self.identity is not None else self.session.email

    # -- the lifecycle ----------------------------------------------------------------------

    @property
    def closing(self) -> bool:
        return self.state is State.CLOSING

    def authenticate(self, identity: Identity | None, *, write_cap: int) -> None:
        """Authenticated (as ``identity``, or in development mode): events are taken, and
        the write cap becomes the slow-consumer limit."""
        if identity is not None:
            self.identity = identity
        if self.state is State.CONNECTING:
            self.state = State.OPEN
        self.carrier.write_cap = write_cap

    def reopen(self) -> None:
        """The client left the namespace and keeps the connection: it is as if newly
        opened (a new session; it must connect and authenticate again in time)."""
        self.rooms.leave_all()
        self.session.start_afresh()
        self.identity = None
        if self.state is State.OPEN:
            self.state = State.CONNECTING
        self.opened_at = self._loop.time()

    # -- writing ----------------------------------------------------------------------------

    def write_frame(self, frame: bytes) -> bool:
        """Queue pre-built frame bytes; written at the end of this loop iteration."""
        if not self.carrier.open:
            return False
        if not self._outbox:
            self._loop.call_soon(self.flush)
        self._outbox.append(frame)
        self._outbox_size += len(frame)
        return True

    @property
    def queued(self) -> int:
        """Bytes written for the peer that it has not taken yet."""
        return self.carrier.buffered + self._outbox_size

    def flush(self) -> None:
        """Write the queued frames in one go (dropped once the connection is closing)."""
        if not self._outbox:
            return
        frames, self._outbox, self._outbox_size = self._outbox, [], 0
        self.carrier.write(frames[0] if len(frames) == 1 else b"".join(frames))

    async def send(self, frame: bytes) -> None:
        """Write one text frame (replies and acks); wait while the carrier is full.

        Only this connection's own task waits here, never a loop that serves many. A
        connection that is gone drops the frame: its task ends at its next read.
        """
        self.flush()
        self.carrier.send_text(frame)
        await self.carrier.drain()
        # Yield like a socket write would: a client whose events are answered without
        # waiting (a flood being refused) must not keep the others from running.
        await asyncio.sleep(0)

    def ping(self) -> None:
        """One heartbeat ping, in the connection's protocol."""
        if self.ping_frame is None:
            self.carrier.ping()
        else:
            self.write_frame(self.ping_frame)

    # -- closing ----------------------------------------------------------------------------

    def close(self, code: int, reason: str) -> None:
        """Stop taking events and close; returns at once (see the module docstring)."""
        self.state = State.CLOSING
        self.flush()
        if self.carrier.close(code, reason):
            _log.info("closing connection", extra={"client": self.session.socket_id, "code": code})

    async def shutdown(self, *, code: int, reason: str, timeout: float) -> None:
        """Stop taking events, let those in progress answer, then close with ``code``."""
        self.state = State.CLOSING
        try:
            if self._in_flight:
                self._idle_waiter = self._loop.create_future()
                await asyncio.wait_for(self._idle_waiter, timeout)
        except TimeoutError:
            _log.warning("event still running at close", extra={"client": self.session.socket_id})
        self.close(code, reason)

    def _limit_hit(self, limit: Limit) -> None:
        """The carrier was cut for a limit: count it and say so, once."""
        self.state = State.CLOSING
        self._outbox, self._outbox_size = [], 0
        if limit == "overflow":
            _log.warning("slow consumer cut", extra={"client": self.session.socket_id})
            SLOW_CONSUMER_CUTS.inc()
        else:
            _log.warning("flooding connection cut", extra={"client": self.session.socket_id})
            FLOOD_CUTS.inc()

    # -- events in flight ---------------------------------------------------------------------

    def begin_event(self) -> None:
        self._in_flight += 1

    def end_event(self) -> None:
        """An event is answered: when it was the last, wake a :meth:`shutdown` waiting."""
        self._in_flight -= 1
        waiter = self._idle_waiter
        if not self._in_flight and waiter is not None and not waiter.done():
            waiter.set_result(None)


def cut_slow(client: Client) -> None:
    """Close a slow consumer with 4008 (it reconnects and resyncs from history); the
    client hears of it as of any limit hit (counted and logged once, its outbox dropped)."""
    client.carrier.cut("overflow", CLOSE_SLOW_CONSUMER, "slow consumer", grace_s=_SLOW_CUT_GRACE_S)
