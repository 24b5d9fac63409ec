"""The gateway's client port: the connection registry, heartbeats, watchdogs, shutdown.

Connections are accepted by :mod:`chat_gateway.edge` (HTTP/1.1 and WebSocket, routed by
:func:`chat_gateway.edge.answers.route`); this module is the application side of it:

* ``/socket.io/?EIO=4``: Socket.IO v5 (Engine.IO v4), over WebSocket or HTTP long-polling.
* ``/ws``: the native JSON protocol.
* ``/`` and ``/static/<file>``: the web chat page (:mod:`chat_gateway.webpage`).

The loops here serve every client at once, so none of them ever waits for one client:
closing is :meth:`Client.close` (a close frame and a deadline, then an abort), and a
heartbeat or watchdog pass only writes and schedules.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import msgspec
from nats.aio.msg import Msg
from websockets.typing import Origin

from chat_common.errors import ChatError, ErrorCode
from chat_common.schemas import (
    DrainRequest,
    DrainResponse,
    TakeoverNotice,
    decode,
    encode,
    parse_request,
)
from chat_gateway.client import Client
from chat_gateway.closecodes import (
    CLOSE_HANDSHAKE_TIMEOUT,
    CLOSE_PING_TIMEOUT,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_SERVICE_RESTART,
    CLOSE_TAKEN_OVER,
    CLOSE_TOKEN_EXPIRED,
)
from chat_gateway.drain import batch_sizes
from chat_gateway.edge.answers import (
    HttpAnswer,
    Poll,
    Upgrade,
    engineio_error,
    route,
    too_many_connections,
    unavailable,
    with_cors,
)
from chat_gateway.edge.connection import EdgeLimits, EdgeProtocol, HttpRequest
from chat_gateway.edge.polling import PollingConn
from chat_gateway.edge.websocket import WebSocket
from chat_gateway.events import EventHandlers
from chat_gateway.metrics import CONNECTIONS, SESSIONS
from chat_gateway.pollrelay import PollRelay
from chat_gateway.settings import GatewaySettings
from chat_gateway.transport import serve_native, serve_socketio
from chat_gateway.webpage import WebPage

__all__ = ["GatewayServer", "edge_limits"]

_log = logging.getLogger("chat.gateway.server")

UPGRADE_TIMEOUT_S = 10.0
"""How long a WebSocket may take to probe and complete an upgrade (the reference default)."""
PREAUTH_WRITE_CAP = 64 * 1024
"""Bytes queued for a peer that has not authenticated yet, above which it is cut (all it
can be sent before then is a handshake, pongs and refusals)."""


def edge_limits(settings: GatewaySettings) -> EdgeLimits:
    """The client port's bounds, from the settings."""
    origins: list[Origin | None] = [Origin(o) for o in settings.allowed_origins]
    if settings.allow_no_origin:
        origins.append(None)  # clients that send no Origin header (non-browser)
    return EdgeLimits(
        max_payload=settings.max_payload,
        origins=origins,
        http_timeout_s=settings.http_timeout_s,
        close_timeout_s=settings.close_timeout_s,
        write_cap=settings.slow_consumer_bytes,
        preauth_write_cap=PREAUTH_WRITE_CAP,
        read_rate=settings.read_rate_per_s,
        read_burst=settings.read_burst,
        flood_cut_s=settings.flood_cut_s,
    )


def _session_request(
    held: PollingConn, method: str, body: bytes, decorate: Callable[[HttpAnswer], HttpAnswer]
) -> HttpAnswer | asyncio.Future[HttpAnswer]:
    return decorate(held.post(body)) if method == "POST" else held.poll(decorate)


_PING_WINDOW_S = 0.05
"""Pings due within this much of each other go out together (a few wake-ups per second)."""


class GatewayServer:
    """Accepts client connections and keeps track of them until shutdown."""

    def __init__(
        self,
        settings: GatewaySettings,
        handlers: EventHandlers,
        page: WebPage,
        *,
        relay: PollRelay | None = None,
        on_drain: Callable[[], None] = lambda: None,
    ) -> None:
        self._s = settings
        self._on_drain = on_drain
        """Called when a drain begins, before anything closes (lowers readiness)."""
        self._handlers = handlers
        self._page = page
        self._limits = edge_limits(settings)
        self._clients: set[Client] = set()
        self._ping_queue: deque[tuple[float, Client]] = deque()
        """(when its next ping is due, client), in due order: each client is pinged
        pingInterval after it opened, then after its last ping (:meth:`heartbeat`)."""
        self._per_ip: dict[str, int] = {}
        self._polls: dict[str, PollingConn] = {}
        self._upgrades: set[asyncio.Task[None]] = set()
        """Probes of WebSockets upgrading a long-polling session."""
        self._relay = relay
        self._accepting = True
        """Long-polling sessions by Engine.IO sid."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._draining = False
        self.port = settings.port
        SESSIONS.set_function(lambda: sum(1 for c in self._clients if c.session_used))

    @property
    def clients(self) -> set[Client]:
        return self._clients

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: EdgeProtocol(self, self._limits),
            self._s.host,
            self._s.port,
            backlog=1024,
            reuse_port=self._s.reuse_port or None,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        _log.info("gateway listening", extra={"host": self._s.host, "port": self.port})

    # -- the edge's questions ---------------------------------------------------------------

    def route(self, request: HttpRequest) -> Upgrade | HttpAnswer | asyncio.Future[HttpAnswer]:
        decision = route(
            request.method, request.target, self._page, socketio_path=self._s.socketio_path
        )
        if isinstance(decision, Upgrade):
            if decision.sid is None:
                return decision
            if decision.sid not in self._polls:  # held elsewhere (no relay for these) or gone
                return self._cors(engineio_error(1, "Session ID unknown"), request)
            return decision
        if isinstance(decision, Poll):
            return self._poll(decision, request)
        return self._cors(decision, request)

    def _poll(self, poll: Poll, request: HttpRequest) -> HttpAnswer | asyncio.Future[HttpAnswer]:
        """A long-polling request: open a session, or hand the request to its session."""

        def decorate(answer: HttpAnswer) -> HttpAnswer:
            return self._cors(answer, request)

        if poll.sid is None:
            if request.header("origin") not in self._limits.origins:
                return decorate(HttpAnswer(403, b"origin not allowed\n"))
            if (refusal := self.admit(request)) is not None:
                return refusal
            conn = PollingConn(
                self._relay.new_sid() if self._relay else secrets.token_urlsafe(15),
                write_cap=min(self._limits.write_cap, self._limits.preauth_write_cap),
                on_gone=self._poll_gone,
            )
            self._polls[conn.sid] = conn
            self._serve(conn, "socketio", request, engine_sid=conn.sid)
            return conn.poll(decorate)
        held = self._polls.get(poll.sid)
        if held is not None:
            return _session_request(held, request.method, request.body, decorate)
        holder = self._relay.holder(poll.sid) if self._relay else None
        if self._relay is not None and holder is not None:
            return self._relay.relay(holder, poll.sid, request.method, request.body, decorate)
        return decorate(engineio_error(1, "Session ID unknown"))

    def answer_relayed(
        self, sid: str, method: str, body: bytes
    ) -> HttpAnswer | asyncio.Future[HttpAnswer]:
        """A polling request another gateway received for a session held here."""
        held = self._polls.get(sid)
        if held is None:
            return engineio_error(1, "Session ID unknown")
        return _session_request(held, method, body, lambda answer: answer)

    def _poll_gone(self, conn: PollingConn) -> None:
        self._polls.pop(conn.sid, None)

    def admit(self, request: HttpRequest) -> HttpAnswer | None:
        """No new connection once the gateway stopped accepting (a kept-alive HTTP
        connection could otherwise open one), and the per-address cap."""
        if not self._accepting:
            return self._cors(unavailable(), request)
        if "sid" in parse_qs(urlsplit(request.target).query):
            return None  # an upgrade: its session counts already
        if self._per_ip.get(request.remote, 0) >= self._s.max_connections_per_ip:
            return self._cors(too_many_connections(), request)
        return None

    def _cors(self, answer: HttpAnswer, request: HttpRequest) -> HttpAnswer:
        return with_cors(
            answer,
            target=request.target,
            method=request.method,
            origin=request.header("origin"),
            allowed=self._s.allowed_origins,
            request_headers=request.header("access-control-request-headers"),
            socketio_path=self._s.socketio_path,
        )

    def opened(self, ws: WebSocket, upgrade: Upgrade, request: HttpRequest) -> None:
        if upgrade.sid is None:
            self._serve(ws, upgrade.protocol, request)
            return
        held = self._polls.get(upgrade.sid)
        if held is None or held.upgrading:  # ended meanwhile, or upgrading already
            ws.close(CLOSE_PROTOCOL_ERROR, "no session to upgrade")
            return
        task = asyncio.create_task(held.upgrade(ws, timeout_s=UPGRADE_TIMEOUT_S))
        self._upgrades.add(task)
        task.add_done_callback(self._upgrades.discard)

    def _serve(
        self,
        conn: WebSocket | PollingConn,
        protocol: str,
        request: HttpRequest,
        *,
        engine_sid: str | None = None,
    ) -> None:
        """Count the connection against its address and run its loop as its own task."""
        remote = request.remote
        self._per_ip[remote] = self._per_ip.get(remote, 0) + 1
        if isinstance(conn, WebSocket) and protocol == "native":
            serving = serve_native(
                conn, self._s, self._handlers, self._register, self._unregister,
                remote=remote, authorization=request.header("authorization") or "",
            )  # fmt: skip
        else:
            serving = serve_socketio(
                conn, self._s, self._handlers, self._register, self._unregister,
                remote=remote, engine_sid=engine_sid,
            )  # fmt: skip
        task = asyncio.create_task(serving, name=f"{protocol}-connection")
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._closed(t, remote))

    def _closed(self, task: asyncio.Task[None], remote: str) -> None:
        self._tasks.discard(task)
        left = self._per_ip.get(remote, 1) - 1
        if left > 0:
            self._per_ip[remote] = left
        else:
            self._per_ip.pop(remote, None)
        if not task.cancelled() and (exc := task.exception()) is not None:
            _log.error("connection task failed", exc_info=exc)

    def _register(self, client: Client) -> None:
        self._clients.add(client)
        interval = self._s.ping_interval_ms / 1000
        self._ping_queue.append((asyncio.get_running_loop().time() + interval, client))
        CONNECTIONS.labels(client.protocol).inc()

    def _unregister(self, client: Client) -> None:
        if client in self._clients:
            self._clients.discard(client)
            CONNECTIONS.labels(client.protocol).dec()

    # -- loops over every client: they write and schedule, never wait for one ---------------

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
                    client.close(CLOSE_TOKEN_EXPIRED, "token expired")
                elif not client.authenticated and age > self._s.connect_timeout_s:
                    client.close(CLOSE_HANDSHAKE_TIMEOUT, "connect or authenticate first")
                elif not client.session_used and age > self._s.join_timeout_s:
                    client.close(CLOSE_HANDSHAKE_TIMEOUT, "join a room first")

    async def heartbeat(self) -> None:
        """Ping each client pingInterval after it opened and after each ping (Engine.IO
        pings for Socket.IO, WebSocket pings for ``/ws``), and close, pingTimeout after a
        ping, each client that has not answered it, as the reference server does.

        Clients are pinged in the order they fall due (one queue: every ping is due one
        interval after the previous one, so appending keeps it sorted), a few milliseconds'
        worth at a time, so 10,000 connections cost a trickle of pings rather than one pass
        that holds the event loop while every pong comes back at once."""
        interval = self._s.ping_interval_ms / 1000
        timeout = self._s.ping_timeout_ms / 1000
        window = min(interval / 50, _PING_WINDOW_S)
        loop = asyncio.get_running_loop()
        queue = self._ping_queue
        checks: dict[int, asyncio.TimerHandle] = {}
        batches = itertools.count()

        def expire(key: int, pinged_at: float, batch: list[Client]) -> None:
            del checks[key]
            for client in batch:
                if (
                    client.conn.last_pong < pinged_at
                    and client in self._clients
                    and not client.closing
                ):
                    client.close(CLOSE_PING_TIMEOUT, "ping timeout")

        try:
            while True:
                # Up to one window early: the batch takes whatever falls due within it.
                await asyncio.sleep(
                    max(0.0, queue[0][0] - window - loop.time()) if queue else interval
                )
                now = loop.time()
                batch: list[Client] = []
                while queue and queue[0][0] <= now + window:
                    _, client = queue.popleft()
                    if client in self._clients and not client.closing:
                        client.ping()
                        batch.append(client)
                        queue.append((now + interval, client))
                if batch:
                    key = next(batches)
                    checks[key] = loop.call_later(timeout, expire, key, now, batch)
        finally:
            for pending in checks.values():
                pending.cancel()

    async def status(self, _body: bytes) -> bytes:
        """The ``status`` endpoint: what this instance holds right now."""
        protocols: dict[str, int] = {}
        for client in self._clients:
            protocols[client.protocol] = protocols.get(client.protocol, 0) + 1
        return encode(
            {"instance": self._s.instance_id, "clients": len(self._clients), "protocols": protocols}
        )

    async def drain_endpoint(self, body: bytes) -> bytes:
        """The ``drain`` endpoint: readiness false, stop listening, close clients (1012) in
        batches over the period asked for; the process stays up."""
        req = parse_request(body, DrainRequest)
        self._on_drain()
        closed = await self.drain(period_s=req.period_s)
        return encode(
            DrainResponse(instance=self._s.instance_id, closed=closed, period_s=req.period_s)
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
                client.take_over()
                client.close(CLOSE_TAKEN_OVER, "session taken over")

    async def stop_accepting(self) -> None:
        """Stop listening; open connections stay until :meth:`close_clients`."""
        self._accepting = False
        if self._server is not None:
            self._server.close()

    async def close_clients(self) -> None:
        """Let each client's in-flight event answer, then close it with 1012; wait until
        every connection is gone (a peer that does not finish closing is aborted after
        ``GATEWAY_CLOSE_TIMEOUT_S``) and its session cleanup has run."""
        for probe in list(self._upgrades):  # sessions still on polling close as they are
            probe.cancel()
        clients = list(self._clients)
        await self._restart_clients(clients)
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        # A close is over when the peer has answered it or the close timeout has aborted
        # the TCP connection; exiting sooner would drop what the kernel still holds for it.
        await asyncio.gather(*(c.conn.wait_closed() for c in clients))

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
        closing: list[asyncio.Future[None]] = []
        for i, size in enumerate(sizes):
            await asyncio.sleep(max(0.0, started + i * period_s / len(sizes) - loop.time()))
            pending = [c for c in pending if c in self._clients and not c.closing]
            if not pending:
                break  # they left, or a shutdown closed them
            last = i == len(sizes) - 1
            batch, pending = (pending, []) if last else (pending[:size], pending[size:])
            # A batch whose events are slow to answer must not hold back the next batch.
            closing.append(asyncio.ensure_future(self._restart_clients(batch)))
            closed += len(batch)
        await asyncio.gather(*closing)
        _log.info("drained", extra={"closed": closed})
        return closed
