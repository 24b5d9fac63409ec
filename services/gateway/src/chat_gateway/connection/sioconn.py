"""One Socket.IO v5 connection without I/O: frames in, actions out.

:class:`SocketIOConnection` holds the connection's protocol state (one :class:`Phase`), decodes
each frame with its :class:`~chat_gateway.protocol.socketio.SocketIOCodec`, and answers with
*actions* for the loop (:mod:`chat_gateway.connection.loop`) to run in order:

* :class:`Send`: write these bytes (a pong, a CONNECT reply or refusal, an ``error`` event);
* :class:`Submit`: hand a client event to the pipeline;
* :class:`Connect`: the client connects the namespace ``/`` with its ``auth``: authenticate,
  maybe resume (``pid`` and ``offset`` parsed here, once), then ask :meth:`accepted` or
  :meth:`refused` for the reply;
* :class:`Leave`: the client left the namespace but keeps its Engine.IO connection;
* :class:`Heard`: an Engine.IO pong arrived;
* :class:`Close`: close with this code, and whether the session stays resumable.

The rules, as the reference server has them: events count only while ``/`` is connected
(before, they are dropped); CONNECT to another namespace is refused with ``Invalid
namespace`` and changes nothing; a second CONNECT to ``/`` is ignored; DISCONNECT from ``/``
leaves it (a goodbye: the session ends) and a later CONNECT starts afresh; an Engine.IO close
packet, or any frame that breaks the protocol, closes the connection and ends its session.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from chat_common.errors import ChatError, ErrorCode
from chat_common.schemas import encode
from chat_gateway.closecodes import CLOSE_GOODBYE, CLOSE_UNAUTHENTICATED
from chat_gateway.offsets import decode_offset
from chat_gateway.protocol.messages import (
    BadEvent,
    ClientEvent,
    NamespaceConnect,
    NamespaceDisconnect,
    Ping,
    Pong,
    ProtocolError,
)
from chat_gateway.protocol.messages import (
    Close as EngineClose,
)
from chat_gateway.protocol.socketio import SocketIOCodec
from chat_gateway.sessionids import parse_pid

__all__ = [
    "Action",
    "Close",
    "Connect",
    "Heard",
    "Leave",
    "Phase",
    "Send",
    "SocketIOConnection",
    "Submit",
]

ROOT_NAMESPACE = "/"


class Phase(Enum):
    """Where a Socket.IO connection is."""

    AWAITING_CONNECT = "awaiting connect"
    """The Engine.IO handshake is out; the namespace ``/`` is not connected."""
    CONNECTED = "connected"
    """``/`` is connected (its CONNECT is being answered, or was): events are taken."""
    CLOSED = "closed"
    """The client said goodbye or broke the protocol: nothing more is read."""


@dataclass(frozen=True, slots=True)
class Send:
    frame: bytes


@dataclass(frozen=True, slots=True)
class Submit:
    event: ClientEvent | BadEvent


@dataclass(frozen=True, slots=True)
class Connect:
    token: object
    """The ``token`` of the CONNECT's auth object (anything: the verifier checks it)."""
    pid: tuple[str, str] | None
    """(session id, resume token) when the client asks to recover a session."""
    positions: dict[str, int]
    """The rooms and seqs of the client's ``offset`` (empty when none or malformed)."""
    offsets: bool
    """Whether this connection's messages carry offsets (connection state recovery)."""


@dataclass(frozen=True, slots=True)
class Leave:
    pass


@dataclass(frozen=True, slots=True)
class Heard:
    pass


@dataclass(frozen=True, slots=True)
class Close:
    code: int
    reason: str
    resumable: bool
    protocol_error: bool = False


Action = Send | Submit | Connect | Leave | Heard | Close


class SocketIOConnection:
    """The protocol state of one Socket.IO connection; see the module docstring."""

    __slots__ = ("_codec", "_offsets", "phase")

    def __init__(self, codec: SocketIOCodec, *, recovery: bool) -> None:
        self._codec = codec
        self._offsets = recovery
        self.phase = Phase.AWAITING_CONNECT

    def open_packet(self, engine_sid: str, *, upgrades: tuple[str, ...] = ()) -> bytes:
        """The Engine.IO handshake, the first thing sent."""
        return self._codec.open_packet(engine_sid, upgrades=upgrades).encode()

    def receive(self, frame: str | bytes) -> list[Action]:
        """What to do about one frame from the client."""
        if self.phase is Phase.CLOSED:
            return []
        try:
            items = self._codec.receive(frame)
        except ProtocolError as exc:
            self.phase = Phase.CLOSED
            return [Close(exc.close_code, exc.reason, resumable=False, protocol_error=True)]
        actions: list[Action] = []
        for item in items:
            if isinstance(item, ClientEvent | BadEvent):
                if self.phase is Phase.CONNECTED:
                    actions.append(Submit(item))
            elif isinstance(item, Pong):
                actions.append(Heard())
            elif isinstance(item, NamespaceConnect):
                actions += self._connect(item)
            elif isinstance(item, NamespaceDisconnect):
                if item.namespace == ROOT_NAMESPACE and self.phase is Phase.CONNECTED:
                    self.phase = Phase.AWAITING_CONNECT
                    actions.append(Leave())
            elif isinstance(item, Ping):
                actions.append(Send(self._codec.PONG))
            elif isinstance(item, EngineClose):
                self.phase = Phase.CLOSED
                actions.append(Close(CLOSE_GOODBYE, "engine.io close", resumable=False))
                break
        return actions

    def _connect(self, item: NamespaceConnect) -> list[Action]:
        if item.namespace != ROOT_NAMESPACE:
            return [Send(self._codec.encode_connect_error(item.namespace, "Invalid namespace"))]
        if self.phase is not Phase.AWAITING_CONNECT:
            return []
        self.phase = Phase.CONNECTED
        auth = item.auth or {}
        if auth.get("recovery") is False:
            self._offsets = False
        pid = parse_pid(auth.get("pid")) if self._offsets else None
        positions = decode_offset(auth.get("offset")) if pid is not None else {}
        return [Connect(auth.get("token"), pid, positions, self._offsets)]

    def accepted(self, *, socket_id: str, pid: str, dropped: list[str]) -> list[Action]:
        """The CONNECT reply (``pid`` when the connection recovers; ``droppedRooms`` for
        rooms a resumed session lost), then an ``error`` event per dropped room (what a
        socket.io-client application can see of the reply)."""
        reply: dict[str, object] = {"sid": socket_id}
        if self._offsets:
            reply["pid"] = pid
        if dropped:
            reply["droppedRooms"] = dropped
        actions: list[Action] = [Send(self._codec.encode_connect(reply))]
        for room_id in dropped:
            error = {"code": ErrorCode.FORBIDDEN.value, "message": "the token does not allow this room",
                     "event": "resume", "roomId": room_id}  # fmt: skip
            actions.append(Send(self._codec.encode_event("error", encode(error))))
        return actions

    def refused(self, error: ChatError) -> list[Action]:
        """The CONNECT refused (a bad token): ``connect_error`` with the code, then close."""
        self.phase = Phase.CLOSED
        refusal = self._codec.encode_connect_error(
            ROOT_NAMESPACE, error.message, {"code": error.code.value}
        )
        return [Send(refusal), Close(CLOSE_UNAUTHENTICATED, "unauthenticated", resumable=True)]
