"""The two connection loops: Socket.IO (``/socket.io/``) and native JSON (``/ws``).

Each loop is the connection's own task: it reads messages from its
:class:`~chat_gateway.edge.websocket.WebSocket`, feeds them to its codec, hands events to
its :class:`~chat_gateway.pipeline.Pipeline` (sends pipelined, answers in order), and closes the
connection on protocol errors with the codec's close code. The loops never raise: every
exit path runs the disconnect cleanup.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from chat_common.errors import ChatError, ErrorCode
from chat_common.schemas import encode
from chat_gateway.client import Client, Encoder
from chat_gateway.closecodes import CLOSE_GOODBYE, CLOSE_UNAUTHENTICATED
from chat_gateway.edge.polling import PollingConn
from chat_gateway.edge.websocket import WebSocket
from chat_gateway.events import EventHandlers
from chat_gateway.metrics import RESUMES
from chat_gateway.offsets import decode_offset
from chat_gateway.pipeline import Pipeline
from chat_gateway.protocol.messages import (
    BadEvent,
    ClientEvent,
    Close,
    NamespaceConnect,
    NamespaceDisconnect,
    Ping,
    Pong,
    ProtocolError,
)
from chat_gateway.protocol.native import NativeCodec
from chat_gateway.protocol.socketio import SocketIOCodec
from chat_gateway.protocol.wsframe import text_frame
from chat_gateway.ratelimit import TokenBucket
from chat_gateway.sessionids import make_pid, parse_pid
from chat_gateway.settings import GatewaySettings

__all__ = ["serve_native", "serve_socketio"]

_log = logging.getLogger("chat.gateway.transport")
_ROOT_NAMESPACE = "/"

Register = Callable[[Client], None]


class _Scope:
    """What one connection loop shares: registration, error handling, the disconnect."""

    def __init__(
        self,
        client: Client,
        handlers: EventHandlers,
        register: Register,
        unregister: Register,
        settings: GatewaySettings,
    ) -> None:
        self.client, self.handlers = client, handlers
        self.pipeline = Pipeline(client, handlers, depth=settings.pipeline_depth)
        self._grace_s = settings.send_deadline_s
        self._register, self._unregister = register, unregister
        self.resumable = True
        """False once the client said goodbye or broke the protocol (its session ends)."""

    async def leave_namespace(self) -> None:
        """The client left ``/`` but keeps its Engine.IO connection (it may connect again):
        its session ends as on a goodbye, and a later CONNECT starts a new one."""
        await self.pipeline.drain()
        await self.handlers.disconnected(self.client, resumable=False)
        self.client.reopen()

    async def __aenter__(self) -> _Scope:
        self._register(self.client)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, _tb: object
    ) -> bool:
        handled = False
        if isinstance(exc, ProtocolError):
            self.resumable = False
            _log.info("protocol error", extra={"client": self.client.sid, "reason": exc.reason})
            self.client.close(exc.close_code, exc.reason)
            handled = True
        await self.pipeline.close(grace_s=self._grace_s)
        self._unregister(self.client)
        resumable = self.resumable and not _said_goodbye(self.client)
        await self.handlers.disconnected(self.client, resumable=resumable)
        return handled


def _said_goodbye(client: Client) -> bool:
    """A client that closes with 1000 (normal closure) has left on purpose.

    Drops (no close frame), 1001 (page unload) and our own closes (1012, 4000, 4008) keep
    the session resumable.
    """
    conn = client.conn
    return conn.close_code_received == CLOSE_GOODBYE and not conn.closed_by_us


def _sio_encoder(codec: SocketIOCodec) -> Encoder:
    def encode(name: str, payload_json: bytes, extra_args_json: tuple[bytes, ...] = ()) -> bytes:
        return codec.encode_event(name, payload_json, extra_args_json=extra_args_json)

    return encode


def _native_encoder(
    name: str, payload_json: bytes, extra_args_json: tuple[bytes, ...] = ()
) -> bytes:
    return NativeCodec.encode_event(name, payload_json)


async def _connect_namespace(
    client: Client, auth: dict[str, object] | None, handlers: EventHandlers, codec: SocketIOCodec
) -> None:
    """Answer CONNECT to ``/``: resume the session named by ``pid`` if possible.

    The reply carries the socket id and, with recovery on, the ``pid``; a client whose
    ``pid`` comes back unchanged has recovered (``socket.recovered`` in socket.io-client),
    and the events it missed follow the reply.
    """
    auth = auth or {}
    if auth.get("recovery") is False:
        client.set_recovery(False)
    try:
        handlers.authenticate(client, auth.get("token"))
    except ChatError as exc:
        await client.send(codec.encode_connect_error("/", exc.message, {"code": exc.code.value}))
        client.close(CLOSE_UNAUTHENTICATED, "unauthenticated")
        return
    plan = None
    if client.recovery and (parsed := parse_pid(auth.get("pid"))) is not None:
        session_id, token = parsed
        plan = await handlers.resumer.resume(
            client, session_id=session_id, token=token, positions=decode_offset(auth.get("offset"))
        )
    reply: dict[str, object] = {"sid": client.sid}
    if client.recovery:
        reply["pid"] = make_pid(client.session_id, client.token)
    if plan is not None and plan.dropped:
        reply["droppedRooms"] = plan.dropped
    await client.send(codec.encode_connect(reply))
    if parse_pid(auth.get("pid")) is not None and client.recovery:
        RESUMES.labels("recovered" if plan else "not_recovered").inc()
    if plan is not None:
        for room_id in plan.dropped:  # what socket.io-client apps can see of the reply
            error = {"code": ErrorCode.FORBIDDEN.value, "message": "the token does not allow this room",
                     "event": "resume", "roomId": room_id}  # fmt: skip
            await client.send(client.encode_event("error", encode(error)))
        handlers.resumer.finish(plan)


async def serve_socketio(
    conn: WebSocket | PollingConn,
    settings: GatewaySettings,
    handlers: EventHandlers,
    register: Register,
    unregister: Register,
    *,
    remote: str,
    engine_sid: str | None = None,
) -> None:
    """One Socket.IO v5 / Engine.IO v4 connection, over WebSocket or long-polling;
    ``engine_sid`` is the Engine.IO session id (the client's id when not given)."""
    codec = SocketIOCodec(
        ping_interval_ms=settings.ping_interval_ms,
        ping_timeout_ms=settings.ping_timeout_ms,
        max_payload=settings.max_payload,
    )
    client = Client(
        conn,
        protocol="socketio",
        remote=remote,
        encode_event=_sio_encoder(codec),
        encode_ack=codec.encode_ack,
        bucket=TokenBucket(rate=settings.rate_per_s, burst=settings.rate_burst),
        ping_frame=text_frame(codec.PING),
    )
    client.set_recovery(settings.connection_state_recovery)
    connected = False
    loop = asyncio.get_running_loop()
    async with _Scope(client, handlers, register, unregister, settings) as scope:
        upgrades = ("websocket",) if isinstance(conn, PollingConn) else ()
        conn.send_text(codec.open_packet(engine_sid or client.sid, upgrades=upgrades).encode())
        while (frame := await conn.recv()) is not None:
            for item in codec.receive(frame):
                if isinstance(item, ClientEvent | BadEvent):
                    if connected:
                        await scope.pipeline.submit(item)
                elif isinstance(item, Pong):
                    conn.last_pong = loop.time()
                elif isinstance(item, NamespaceConnect):
                    if item.namespace != _ROOT_NAMESPACE:
                        await client.send(
                            codec.encode_connect_error(item.namespace, "Invalid namespace")
                        )
                    elif not connected:
                        connected = True
                        await scope.pipeline.drain()
                        await _connect_namespace(client, item.auth, handlers, codec)
                elif isinstance(item, NamespaceDisconnect):
                    if item.namespace == _ROOT_NAMESPACE and connected:
                        connected = False
                        await scope.leave_namespace()
                elif isinstance(item, Ping):
                    await client.send(codec.PONG)
                elif isinstance(item, Close):
                    scope.resumable = False
                    client.close(CLOSE_GOODBYE, "engine.io close")
                    return


async def serve_native(
    conn: WebSocket,
    settings: GatewaySettings,
    handlers: EventHandlers,
    register: Register,
    unregister: Register,
    *,
    remote: str,
    authorization: str = "",
) -> None:
    """One native JSON protocol connection; ``authorization`` is the handshake's
    ``Authorization`` header."""
    codec = NativeCodec(max_payload=settings.max_payload)
    client = Client(
        conn,
        protocol="native",
        remote=remote,
        encode_event=_native_encoder,
        encode_ack=codec.encode_ack,
        bucket=TokenBucket(rate=settings.rate_per_s, burst=settings.rate_burst),
        ping_frame=None,
    )
    async with _Scope(client, handlers, register, unregister, settings) as scope:
        if handlers.verifier is None or authorization.startswith("Bearer "):
            try:
                handlers.authenticate(client, authorization.removeprefix("Bearer ").strip())
            except ChatError:
                client.close(CLOSE_UNAUTHENTICATED, "unauthenticated")
                return
        while (frame := await conn.recv()) is not None:
            await scope.pipeline.submit(codec.receive(frame))
