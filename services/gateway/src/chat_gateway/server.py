"""The gateway's client port: HTTP routing, the connection registry, heartbeats, shutdown.

Paths:

* ``/socket.io/?EIO=4&transport=websocket``: Socket.IO v5 (Engine.IO v4, WebSocket only).
  Long-polling is answered ``400`` with Engine.IO's error body, so clients must be set to
  ``transports: ["websocket"]``.
* ``/ws``: the native JSON protocol.
* ``/`` and ``/static/<file>``: the web chat page (:mod:`chat_gateway.webpage`).
* anything else: ``404``.
"""

from __future__ import annotations

import asyncio
import http
import json
import logging
import time
from urllib.parse import parse_qs, urlsplit

import msgspec
from nats.aio.msg import Msg
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.typing import Origin

from chat_common.errors import ChatError, ErrorCode
from chat_common.schemas import TakeoverNotice, decode, encode
from chat_gateway.client import Client
from chat_gateway.drain import batch_sizes
from chat_gateway.events import EventHandlers
from chat_gateway.metrics import CONNECTIONS, SESSIONS
from chat_gateway.protocol.socketio import SocketIOCodec
from chat_gateway.settings import GatewaySettings
from chat_gateway.transport import serve_native, serve_socketio
from chat_gateway.webpage import WebPage

__all__ = ["CLOSE_PING_TIMEOUT", "CLOSE_SERVICE_RESTART", "CLOSE_TAKEN_OVER", "GatewayServer"]

CLOSE_SERVICE_RESTART = 1012
CLOSE_PING_TIMEOUT = 4000
CLOSE_TOKEN_EXPIRED = 4003
"""The token expired while connected: reconnect (and resume) with a fresh one."""
CLOSE_HANDSHAKE_TIMEOUT = 4002
"""The connection did not connect/authenticate, or join, in time."""
CLOSE_TAKEN_OVER = 4009
"""The session of this connection was resumed on another connection."""
SOCKETIO_PATH = "/socket.io/"
NATIVE_PATH = "/ws"

_log = logging.getLogger("chat.gateway.server")


def _engineio_error(code: int, message: str) -> Response:
    body = json.dumps({"code": code, "message": message}).encode()
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return Response(http.HTTPStatus.BAD_REQUEST, "Bad Request", headers, body)


def _address(conn: ServerConnection) -> str:
    remote = conn.remote_address
    return str(remote[0]) if remote else "?"


def route_request(path: str, page: WebPage | None = None) -> Response | None:
    """Decide what to do with a handshake request: ``None`` lets the WebSocket through."""
    parts = urlsplit(path)
    if parts.path == NATIVE_PATH:
        return None
    if page is not None and (served := page.respond(path)) is not None:
        return served
    if parts.path != SOCKETIO_PATH:
        body = b"not found\n"
        headers = Headers([("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return Response(http.HTTPStatus.NOT_FOUND, "Not Found", headers, body)
    query = parse_qs(parts.query)
    if query.get("EIO") != ["4"]:
        return _engineio_error(5, "Unsupported protocol version")
    if query.get("transport") != ["websocket"]:
        return _engineio_error(3, "Bad request: only the websocket transport is served")
    return None


class GatewayServer:
    """Accepts client connections and keeps track of them until shutdown."""

    def __init__(self, settings: GatewaySettings, handlers: EventHandlers) -> None:
        self._s = settings
        self._handlers = handlers
        self._clients: set[Client] = set()
        self._per_ip: dict[str, int] = {}
        self._server: Server | None = None
        self._draining = False
        self._page = WebPage.load()
        self.port = settings.port
        SESSIONS.set_function(lambda: sum(1 for c in self._clients if c.session_used))

    @property
    def clients(self) -> set[Client]:
        return self._clients

    async def start(self) -> None:
        self._server = await serve(
            self._connection,
            self._s.host,
            self._s.port,
            process_request=self._process_request,
            max_size=self._s.max_payload,
            compression=None,
            ping_interval=self._s.ping_interval_ms / 1000,
            ping_timeout=self._s.ping_timeout_ms / 1000,
            server_header=None,
            origins=self._origins(),
        )
        self.port = self._server.sockets[0].getsockname()[1]
        _log.info("gateway listening", extra={"host": self._s.host, "port": self.port})

    def _origins(self) -> list[Origin | None]:
        """Exact-match allowlist; ``None`` admits clients that send no Origin header."""
        origins: list[Origin | None] = [Origin(o) for o in self._s.allowed_origins]
        if self._s.allow_no_origin:
            origins.append(None)
        return origins

    async def watch(self) -> None:
        """Once a second: close connections whose token expired, that never connected or
        authenticated in time, or that never joined a room."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(1.0)
            now, wall = loop.time(), time.time()
            for client in list(self._clients):
                if client.closing:
                    continue
                age = now - client.opened_at
                if (
                    client.identity is not None
                    and client.identity.expires_at + self._s.jwt_leeway_s < wall
                ):
                    await self._close(client, CLOSE_TOKEN_EXPIRED, "token expired")
                elif not client.authenticated and age > self._s.connect_timeout_s:
                    await self._close(
                        client, CLOSE_HANDSHAKE_TIMEOUT, "connect or authenticate first"
                    )
                elif not client.session_used and age > self._s.join_timeout_s:
                    await self._close(client, CLOSE_HANDSHAKE_TIMEOUT, "join a room first")

    async def _close(self, client: Client, code: int, reason: str) -> None:
        _log.info("closing connection", extra={"client": client.id, "code": code})
        client.closing = True
        await client.ws.close(code, reason)

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        refused = route_request(request.path, self._page)
        if (
            refused is None
            and self._per_ip.get(_address(conn), 0) >= self._s.max_connections_per_ip
        ):
            body = b"too many connections from this address\n"
            headers = Headers([("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
            return Response(http.HTTPStatus.TOO_MANY_REQUESTS, "Too Many Requests", headers, body)
        return refused

    def _register(self, client: Client) -> None:
        self._clients.add(client)
        address = _address(client.ws)
        self._per_ip[address] = self._per_ip.get(address, 0) + 1
        CONNECTIONS.labels(client.protocol).inc()

    def _unregister(self, client: Client) -> None:
        if client in self._clients:
            self._clients.discard(client)
            address = _address(client.ws)
            left = self._per_ip.get(address, 1) - 1
            if left > 0:
                self._per_ip[address] = left
            else:
                self._per_ip.pop(address, None)
            CONNECTIONS.labels(client.protocol).dec()

    async def _connection(self, ws: ServerConnection) -> None:
        request, response = ws.request, ws.response
        path = urlsplit(request.path if request else "").path
        authorization = request.headers.get("Authorization", "") if request else ""
        # Past the handshake its headers are not needed: dropping them frees a few KiB per
        # connection. (The request object stays: the library tells by it that the
        # handshake is done.)
        for message in (request, response):
            if message is not None:
                message.headers = Headers()
        if path == NATIVE_PATH:
            await serve_native(
                ws, self._s, self._handlers, self._register, self._unregister,
                authorization=authorization,
            )  # fmt: skip
            return
        # Engine.IO's ping/pong (:meth:`heartbeat`) watches Socket.IO clients; the library's
        # WebSocket keepalive task would only repeat it, at ~1.4 KiB per connection.
        if ws.keepalive_task is not None:
            ws.keepalive_task.cancel()
            ws.keepalive_task = None
        await serve_socketio(ws, self._s, self._handlers, self._register, self._unregister)

    async def heartbeat(self) -> None:
        """Engine.IO pings to Socket.IO clients; close those whose pong is overdue."""
        interval = self._s.ping_interval_ms / 1000
        deadline = interval + self._s.ping_timeout_ms / 1000
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            for client in list(self._clients):
                if client.protocol != "socketio" or client.closing:
                    continue
                if now - client.last_pong > deadline:
                    _log.info("ping timeout", extra={"client": client.id})
                    client.closing = True
                    await client.ws.close(CLOSE_PING_TIMEOUT, "ping timeout")
                else:
                    client.write_now(SocketIOCodec.PING)

    async def status(self, _body: bytes) -> bytes:
        """The ``status`` endpoint: what this instance holds right now."""
        protocols: dict[str, int] = {}
        for client in self._clients:
            protocols[client.protocol] = protocols.get(client.protocol, 0) + 1
        return encode(
            {"instance": self._s.instance_id, "clients": len(self._clients), "protocols": protocols}
        )

    async def on_control(self, msg: Msg) -> None:
        """Orders for this gateway instance: a session taken over by a resume elsewhere."""
        try:
            notice = decode(msg.data, TakeoverNotice)
        except (msgspec.DecodeError, msgspec.ValidationError):
            _log.warning("undecodable control message")
            return
        for client in list(self._clients):
            if client.key == notice.conn and not client.closing:
                client.taken_over = True
                client.closing = True
                await client.ws.close(CLOSE_TAKEN_OVER, "session taken over")

    async def stop_accepting(self) -> None:
        """Stop listening; open connections stay until :meth:`close_clients`."""
        if self._server is not None:
            self._server.close(close_connections=False)

    async def close_clients(self) -> None:
        """Let each client's in-flight event answer, then close it with 1012."""
        await self._restart_clients(list(self._clients))
        if self._server is not None:
            await self._server.wait_closed()

    async def _restart_clients(self, clients: list[Client]) -> None:
        await asyncio.gather(
            *(
                c.shutdown(
                    code=CLOSE_SERVICE_RESTART,
                    reason="service restart",
                    timeout=self._s.shutdown_grace_s,
                )
                for c in clients
            ),
            return_exceptions=True,
        )

    async def drain(self, *, period_s: float) -> int:
        """Stop listening, then close every client with 1012 in small batches spread over
        ``period_s`` (they resume on other gateways); returns how many were closed.

        The process keeps running. Readiness is the caller's to lower first.
        """
        if self._draining:
            raise ChatError(ErrorCode.CONFLICT, "this gateway is already draining")
        self._draining = True
        await self.stop_accepting()
        pending = [c for c in self._clients if not c.closing]
        sizes = batch_sizes(len(pending), period_s=period_s)
        _log.info("draining", extra={"clients": len(pending), "batches": len(sizes)})
        loop = asyncio.get_running_loop()
        started, closed = loop.time(), 0
        for i, size in enumerate(sizes):
            await asyncio.sleep(max(0.0, started + i * period_s / len(sizes) - loop.time()))
            pending = [c for c in pending if c in self._clients and not c.closing]
            if not pending:
                break  # they left, or a shutdown closed them
            last = i == len(sizes) - 1
            batch, pending = (pending, []) if last else (pending[:size], pending[size:])
            await self._restart_clients(batch)
            closed += len(batch)
        _log.info("drained", extra={"closed": closed})
        return closed
