"""The loop of each client connection: frames in, the protocol's actions out.

Every connection runs as its own task (:class:`Connections` starts it). The loop only pumps:
it reads the client's messages from its carrier, hands them to the protocol's logic (the
sans-I/O :class:`~chat_gateway.connection.sioconn.SocketIOConnection`, or the native codec)
and runs what comes back: events go to the connection's
:class:`~chat_gateway.connection.pipeline.Pipeline` (sends pipelined, answers in order),
frames are written, connects and goodbyes go to the
:class:`~chat_gateway.connection.dispatcher.Dispatcher`. The loops never raise past their
cleanup: whatever ends a connection, its events in flight get a grace period, it leaves the
registry, and its session is kept resumable or ended.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from chat_common.errors import ChatError
from chat_gateway.carrier import Carrier
from chat_gateway.closecodes import CLOSE_GOODBYE, CLOSE_UNAUTHENTICATED
from chat_gateway.connection.client import Client, Encoder
from chat_gateway.connection.dispatcher import Dispatcher, Resume
from chat_gateway.connection.pipeline import Pipeline
from chat_gateway.connection.sioconn import (
    Action,
    Close,
    Connect,
    Heard,
    Leave,
    Send,
    SocketIOConnection,
    Submit,
)
from chat_gateway.protocol.messages import ProtocolError
from chat_gateway.protocol.native import NativeCodec
from chat_gateway.protocol.socketio import SocketIOCodec
from chat_gateway.protocol.wsframe import text_frame
from chat_gateway.ratelimit import TokenBucket
from chat_gateway.registry import ClientRegistry
from chat_gateway.settings import GatewaySettings

__all__ = ["Connections"]

_log = logging.getLogger("chat.gateway.loop")


class Connections:
    """Builds each new connection's client and runs its loop until the connection ends."""

    def __init__(
        self, settings: GatewaySettings, dispatcher: Dispatcher, registry: ClientRegistry
    ) -> None:
        self._s = settings
        self._dispatcher = dispatcher
        self._registry = registry

    async def socketio(
        self,
        carrier: Carrier,
        *,
        remote: str,
        engine_sid: str | None = None,
        upgrades: tuple[str, ...] = (),
    ) -> None:
        """One Socket.IO v5 / Engine.IO v4 connection; ``engine_sid`` names a long-polling
        session (a WebSocket opened directly takes its socket id for one)."""
        s = self._s
        codec = SocketIOCodec(
            ping_interval_ms=s.ping_interval_ms,
            ping_timeout_ms=s.ping_timeout_ms,
            max_payload=s.max_payload,
        )

        def encode_event(
            name: str, payload_json: bytes, extra_args_json: tuple[bytes, ...] = ()
        ) -> bytes:
            return codec.encode_event(name, payload_json, extra_args_json=extra_args_json)

        client = self._client(
            carrier,
            "socketio",
            remote,
            encode_event,
            codec.encode_ack,
            ping_frame=text_frame(codec.PING),
            offsets=s.connection_state_recovery,
        )
        machine = SocketIOConnection(codec, recovery=s.connection_state_recovery)
        open_packet = machine.open_packet(engine_sid or client.session.socket_id, upgrades=upgrades)
        await self._run(client, _SocketIOPump(client, machine, self._dispatcher, open_packet).run)

    async def native(self, carrier: Carrier, *, remote: str, authorization: str = "") -> None:
        """One native JSON protocol connection; ``authorization`` is the handshake's
        ``Authorization`` header."""
        codec = NativeCodec(max_payload=self._s.max_payload)

        def encode_event(
            name: str, payload_json: bytes, extra_args_json: tuple[bytes, ...] = ()
        ) -> bytes:
            return NativeCodec.encode_event(name, payload_json)

        client = self._client(carrier, "native", remote, encode_event, codec.encode_ack)

        async def pump(pipeline: Pipeline) -> bool:
            if not self._dispatcher.open_native(client, authorization):
                client.close(CLOSE_UNAUTHENTICATED, "unauthenticated")
                return True
            while (frame := await client.recv()) is not None:
                try:
                    event = codec.receive(frame)
                except ProtocolError as exc:
                    _close_for_protocol(client, Close(exc.close_code, exc.reason, False, True))
                    return False
                await pipeline.submit(event)
            return True

        await self._run(client, pump)

    def _client(
        self,
        carrier: Carrier,
        protocol: str,
        remote: str,
        encode_event: Encoder,
        encode_ack: Callable[[int, bytes], bytes],
        *,
        ping_frame: bytes | None = None,
        offsets: bool = False,
    ) -> Client:
        bucket = TokenBucket(rate=self._s.rate_per_s, burst=self._s.rate_burst)
        return Client(
            carrier,
            protocol=protocol,
            remote=remote,
            encode_event=encode_event,
            encode_ack=encode_ack,
            bucket=bucket,
            ping_frame=ping_frame,
            offsets=offsets,
        )

    async def _run(self, client: Client, pump: Callable[[Pipeline], Awaitable[bool]]) -> None:
        """Run ``pump`` (which says whether the session stays resumable) with the client
        registered; then let its events in flight finish for a while (a client that sends,
        then says goodbye, still has its messages stored), unregister it, and keep its
        session resumable (a drop) or end it (a goodbye, a protocol error)."""
        pipeline = Pipeline(client, self._dispatcher, depth=self._s.pipeline_depth)
        self._registry.add(client)
        resumable = True
        try:
            resumable = await pump(pipeline)
        finally:
            await pipeline.close(grace_s=self._s.send_deadline_s)
            self._registry.remove(client)
            resumable = resumable and not _said_goodbye(client)
            await self._dispatcher.disconnected(client, resumable=resumable)


class _SocketIOPump:
    """Feeds one Socket.IO connection's frames to its machine and runs its actions."""

    __slots__ = ("_client", "_dispatcher", "_machine", "_open_packet", "_pipeline")

    def __init__(
        self,
        client: Client,
        machine: SocketIOConnection,
        dispatcher: Dispatcher,
        open_packet: bytes,
    ) -> None:
        self._client, self._machine = client, machine
        self._dispatcher, self._open_packet = dispatcher, open_packet

    async def run(self, pipeline: Pipeline) -> bool:
        """Pump until the connection ends; whether its session stays resumable."""
        self._pipeline = pipeline
        self._client.carrier.send_text(self._open_packet)
        while (frame := await self._client.recv()) is not None:
            closed = await self._perform(self._machine.receive(frame))
            if closed is not None:
                return closed.resumable
        return True

    async def _perform(self, actions: list[Action]) -> Close | None:
        """Run ``actions`` in order; the close among them, if any (nothing runs after it)."""
        client = self._client
        for action in actions:
            if isinstance(action, Submit):
                await self._pipeline.submit(action.event)
            elif isinstance(action, Send):
                await client.send(action.frame)
            elif isinstance(action, Heard):
                client.heard_pong()
            elif isinstance(action, Connect):
                await self._pipeline.drain()
                if (closed := await self._connect(action)) is not None:
                    return closed
            elif isinstance(action, Leave):
                await self._pipeline.drain()
                await self._dispatcher.disconnected(client, resumable=False)
                client.reopen()
            else:
                _close_for_protocol(client, action)
                return action
        return None

    async def _connect(self, action: Connect) -> Close | None:
        client, machine = self._client, self._machine
        resume = None
        if action.pid is not None:
            resume = Resume(action.pid[0], action.pid[1], action.positions)
        try:
            connected = await self._dispatcher.connect(
                client, token=action.token, resume=resume, offsets=action.offsets
            )
        except ChatError as exc:
            return await self._perform(machine.refused(exc))
        session = client.session
        reply = machine.accepted(
            socket_id=session.socket_id, pid=session.pid, dropped=connected.dropped
        )
        closed = await self._perform(reply)
        if connected.then is not None:
            connected.then()
        return closed


def _close_for_protocol(client: Client, close: Close) -> None:
    if close.protocol_error:
        _log.info(
            "protocol error", extra={"client": client.session.socket_id, "reason": close.reason}
        )
    client.close(close.code, close.reason)


def _said_goodbye(client: Client) -> bool:
    """A client that closes with 1000 (normal closure) has left on purpose.

    Drops (no close frame), 1001 (page unload) and our own closes (1012, 4000, 4008) keep
    the session resumable.
    """
    carrier = client.carrier
    return carrier.close_code_received == CLOSE_GOODBYE and not carrier.closed_by_us
