"""The two connection loops: Socket.IO (``/socket.io/``) and native JSON (``/ws``).

Each loop feeds frames to its codec, hands events to :class:`EventHandlers` one at a time
(so a client's sends keep their order), and closes the connection on protocol errors with
the codec's close code. The loops never raise: every exit path runs the disconnect cleanup.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from chat_gateway.client import Client
from chat_gateway.events import EventHandlers
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
from chat_gateway.settings import GatewaySettings

__all__ = ["serve_native", "serve_socketio"]

_log = logging.getLogger("chat.gateway.transport")
_ROOT_NAMESPACE = "/"

Register = Callable[[Client], None]


async def _handle(client: Client, handlers: EventHandlers, event: ClientEvent | BadEvent) -> None:
    if client.closing:
        return  # shutting down: the client resends after it reconnects
    client.idle.clear()
    try:
        await handlers.dispatch(client, event)
    finally:
        client.idle.set()


async def serve_socketio(
    ws: ServerConnection,
    settings: GatewaySettings,
    handlers: EventHandlers,
    register: Register,
    unregister: Register,
) -> None:
    """One Socket.IO v5 / Engine.IO v4 connection over WebSocket."""
    codec = SocketIOCodec(
        ping_interval_ms=settings.ping_interval_ms,
        ping_timeout_ms=settings.ping_timeout_ms,
        max_payload=settings.max_payload,
    )
    client = Client(
        ws,
        protocol="socketio",
        encode_event=codec.encode_event,
        encode_ack=codec.encode_ack,
        slow_limit=settings.slow_consumer_bytes,
    )
    connected = False
    register(client)
    try:
        await ws.send(codec.open_packet(client.id))
        async for frame in ws:
            for item in codec.receive(frame):
                if isinstance(item, ClientEvent | BadEvent):
                    if connected:
                        await _handle(client, handlers, item)
                elif isinstance(item, Pong):
                    client.last_pong = asyncio.get_running_loop().time()
                elif isinstance(item, NamespaceConnect):
                    if item.namespace != _ROOT_NAMESPACE:
                        await ws.send(
                            codec.encode_connect_error(item.namespace, "Invalid namespace"),
                            text=True,
                        )
                        continue
                    connected = True
                    await ws.send(codec.encode_connect({"sid": client.id}), text=True)
                elif isinstance(item, NamespaceDisconnect):
                    if item.namespace == _ROOT_NAMESPACE:
                        await ws.close(1000, "client disconnect")
                        return
                elif isinstance(item, Ping):
                    await ws.send(codec.PONG, text=True)
                elif isinstance(item, Close):
                    await ws.close(1000, "engine.io close")
                    return
    except ProtocolError as exc:
        _log.info("protocol error", extra={"client": client.id, "reason": exc.reason})
        await ws.close(exc.close_code, exc.reason)
    except ConnectionClosed:
        pass
    finally:
        unregister(client)
        await handlers.disconnected(client)


async def serve_native(
    ws: ServerConnection,
    settings: GatewaySettings,
    handlers: EventHandlers,
    register: Register,
    unregister: Register,
) -> None:
    """One native JSON protocol connection."""
    codec = NativeCodec(max_payload=settings.max_payload)
    client = Client(
        ws,
        protocol="native",
        encode_event=codec.encode_event,
        encode_ack=codec.encode_ack,
        slow_limit=settings.slow_consumer_bytes,
    )
    register(client)
    try:
        async for frame in ws:
            await _handle(client, handlers, codec.receive(frame))
    except ProtocolError as exc:
        _log.info("protocol error", extra={"client": client.id, "reason": exc.reason})
        await ws.close(exc.close_code, exc.reason)
    except ConnectionClosed:
        pass
    finally:
        unregister(client)
        await handlers.disconnected(client)
