"""The client port, the application side of the edge: which request gets what, and who
may connect.

Connections are accepted by :mod:`chat_gateway.edge` (HTTP/1.1 and WebSocket, routed by
:func:`chat_gateway.edge.answers.route`); :class:`ClientPort` answers its questions:

* ``/socket.io/?EIO=4``: Socket.IO v5 (Engine.IO v4), over WebSocket or HTTP long-polling;
  a long-polling session is a :class:`~chat_gateway.edge.polling.PollingCarrier` held here
  by its Engine.IO sid, and a request for a session another gateway holds is relayed there
  (:mod:`chat_gateway.pollrelay`); a WebSocket that names a sid is probed and upgrades it.
* ``/ws``: the native JSON protocol.
* ``/`` and ``/static/<file>``: the web chat page (:mod:`chat_gateway.webpage`).

Answers on the Socket.IO path carry CORS headers for allowed origins. Each address may hold
``GATEWAY_MAX_CONNECTIONS_PER_IP`` connections; once the port stops accepting (shutdown,
drain) new connections get 503. Every connection runs as its own task
(:class:`~chat_gateway.connection.loop.Connections`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.typing import Origin

from chat_gateway.carrier import Carrier
from chat_gateway.closecodes import CLOSE_PROTOCOL_ERROR
from chat_gateway.connection.loop import Connections
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
from chat_gateway.edge.polling import Phase, PollingCarrier
from chat_gateway.edge.tcp import EdgeLimits, HttpRequest, TcpConnection
from chat_gateway.edge.websocket import WebSocket
from chat_gateway.pollrelay import PollRelay
from chat_gateway.settings import GatewaySettings
from chat_gateway.webpage import WebPage

__all__ = ["ClientPort", "edge_limits"]

_log = logging.getLogger("chat.gateway.port")

UPGRADE_TIMEOUT_S = 10.0
"""How long a WebSocket may take to probe and complete an upgrade (the reference default)."""
PREAUTH_WRITE_CAP = 64 * 1024
"""Bytes queued for a peer that has not authenticated yet, above which it is cut (all it
can be sent before then is a handshake, pongs and refusals)."""

Decorate = Callable[[HttpAnswer], HttpAnswer]


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
        send_buffer=settings.send_buffer_bytes,
    )


def _session_request(
    held: PollingCarrier, method: str, body: bytes, decorate: Decorate
) -> HttpAnswer | asyncio.Future[HttpAnswer]:
    return decorate(held.post(body)) if method == "POST" else held.poll(decorate)


class ClientPort:
    """Routes requests, holds long-polling sessions, counts connections per address."""

    def __init__(
        self,
        settings: GatewaySettings,
        connections: Connections,
        page: WebPage,
        *,
        relay: PollRelay | None = None,
    ) -> None:
        self._s = settings
        self._connections = connections
        self._page = page
        self._relay = relay
        self._limits = edge_limits(settings)
        self._per_ip: dict[str, int] = {}
        self._polls: dict[str, PollingCarrier] = {}
        """Long-polling sessions held here, by Engine.IO sid."""
        self._upgrades: set[asyncio.Task[None]] = set()
        """Probes of WebSockets upgrading a long-polling session."""
        self._tasks: set[asyncio.Task[None]] = set()
        """The connections' own tasks."""
        self._accepting = True
        self._refusing = False
        """New connections refused for a while (the bus is lost: :mod:`chat_gateway.busloss`)."""
        self._server: asyncio.Server | None = None
        self.port = settings.port

    async def start(self) -> None:
        self._server = await asyncio.get_running_loop().create_server(
            lambda: TcpConnection(self, self._limits),
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
            if decision.engine_sid is not None and decision.engine_sid not in self._polls:
                # held elsewhere (no relay for these) or gone
                return self._cors(engineio_error(1, "Session ID unknown"), request)
            return decision
        if isinstance(decision, Poll):
            return self._poll(decision, request)
        return self._cors(decision, request)

    def _poll(self, poll: Poll, request: HttpRequest) -> HttpAnswer | asyncio.Future[HttpAnswer]:
        """A long-polling request: open a session, or hand the request to its session."""

        def decorate(answer: HttpAnswer) -> HttpAnswer:
            return self._cors(answer, request)

        if poll.engine_sid is None:
            if request.header("origin") not in self._limits.origins:
                return decorate(HttpAnswer(403, b"origin not allowed\n"))
            if (refusal := self.admit(request)) is not None:
                return refusal
            carrier = PollingCarrier(
                self._relay.new_sid() if self._relay else secrets.token_urlsafe(15),
                write_cap=min(self._limits.write_cap, self._limits.preauth_write_cap),
                on_gone=self._poll_gone,
            )
            self._polls[carrier.engine_sid] = carrier
            self.serve(
                carrier,
                remote=request.remote,
                serving=self._connections.socketio(
                    carrier,
                    remote=request.remote,
                    engine_sid=carrier.engine_sid,
                    upgrades=("websocket",),
                ),
            )
            return carrier.poll(decorate)
        held = self._polls.get(poll.engine_sid)
        if held is not None:
            return _session_request(held, request.method, request.body, decorate)
        holder = self._relay.holder(poll.engine_sid) if self._relay else None
        if self._relay is not None and holder is not None:
            return self._relay.relay(
                holder, poll.engine_sid, request.method, request.body, decorate
            )
        return decorate(engineio_error(1, "Session ID unknown"))

    def answer_relayed(
        self, engine_sid: str, method: str, body: bytes
    ) -> HttpAnswer | asyncio.Future[HttpAnswer]:
        """A polling request another gateway received for a session held here."""
        held = self._polls.get(engine_sid)
        if held is None:
            return engineio_error(1, "Session ID unknown")
        return _session_request(held, method, body, lambda answer: answer)

    def polling(self, engine_sid: str) -> PollingCarrier | None:
        """The long-polling session held here under ``engine_sid``, if any."""
        return self._polls.get(engine_sid)

    def _poll_gone(self, carrier: PollingCarrier) -> None:
        self._polls.pop(carrier.engine_sid, None)

    def admit(self, request: HttpRequest) -> HttpAnswer | None:
        """No new connection once the port stopped accepting (a kept-alive HTTP connection
        could otherwise open one), and the per-address cap."""
        if not self._accepting or self._refusing:
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
        if upgrade.engine_sid is None:
            if upgrade.protocol == "native":
                authorization = request.header("authorization") or ""
                serving = self._connections.native(
                    ws, remote=request.remote, authorization=authorization
                )
            else:
                serving = self._connections.socketio(ws, remote=request.remote)
            self.serve(ws, remote=request.remote, serving=serving)
            return
        held = self._polls.get(upgrade.engine_sid)
        if held is None or held.phase is not Phase.POLLING:  # ended, or upgrading already
            ws.close(CLOSE_PROTOCOL_ERROR, "no session to upgrade")
            return
        task = asyncio.create_task(held.upgrade(ws, timeout_s=UPGRADE_TIMEOUT_S))
        self._upgrades.add(task)
        task.add_done_callback(self._upgrades.discard)

    def serve(
        self, carrier: Carrier, *, remote: str, serving: Coroutine[Any, Any, None]
    ) -> asyncio.Task[None]:
        """Count the connection against its address and run its loop as its own task."""
        self._per_ip[remote] = self._per_ip.get(remote, 0) + 1
        task = asyncio.create_task(serving, name=f"{type(carrier).__name__}-connection")
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._closed(t, remote))
        return task

    def _closed(self, task: asyncio.Task[None], remote: str) -> None:
        self._tasks.discard(task)
        left = self._per_ip.get(remote, 1) - 1
        if left > 0:
            self._per_ip[remote] = left
        else:
            self._per_ip.pop(remote, None)
        if not task.cancelled() and (exc := task.exception()) is not None:
            _log.error("connection task failed", exc_info=exc)

    def refuse_new(self, refusing: bool) -> None:
        """Answer new connections 503 (``True``) or take them again."""
        self._refusing = refusing

    # -- stopping -----------------------------------------------------------------------------

    async def stop_accepting(self) -> None:
        """Stop listening; open connections stay until they are closed."""
        self._accepting = False
        if self._server is not None:
            self._server.close()

    def cancel_upgrades(self) -> None:
        """Sessions still on long-polling at shutdown close as they are."""
        for probe in list(self._upgrades):
            probe.cancel()

    async def connections_ended(self) -> None:
        """Wait until every connection's task has ended (its cleanup included)."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
