"""One TCP connection on the client port: HTTP/1.1 first (h11), then maybe a WebSocket.

:class:`TcpConnection` is the connection's ``asyncio.Protocol``. Requests are parsed by h11
and routed by the application (:class:`EdgeApp`); answers are
well-formed HTTP/1.1 with a ``Content-Length``, kept alive unless they say
``Connection: close``; a client that sends requests without reading the answers is not
read until it does. Any method and any body get an answer: bodies up to the payload limit
are read and handed to the application with the request, larger ones get ``413``; a malformed request gets ``400`` (or
``431`` for oversized headers), and a request that does not arrive within
``http_timeout_s`` gets ``408`` (an idle keep-alive connection is just closed). When the
gateway closes after an answer it half-closes first and reads until the client is done
(a *lingering close*), so the answer is not lost to a TCP reset over unread bytes.

An upgrade request the application accepts is checked by websockets' own handshake code
(``ServerProtocol.accept``: version, key, origin allowlist); a ``101`` hands the connection
to a :class:`~chat_gateway.edge.websocket.WebSocket`, anything else is answered and closed.

The application may also answer later (a long-polling ``GET``): it returns a future, and
the connection reads nothing more (its next request waits in the kernel) until the future
has its answer. When the client goes away first, the future is cancelled, so that the
application knows the answer was never delivered.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, cast

import h11
from websockets.datastructures import Headers
from websockets.http11 import Request as WsRequest
from websockets.server import ServerProtocol
from websockets.typing import Origin

from chat_gateway.edge.answers import HttpAnswer, Upgrade
from chat_gateway.edge.budget import ReadBudget
from chat_gateway.edge.flow import Deadline
from chat_gateway.edge.websocket import WebSocket

__all__ = ["EdgeApp", "EdgeLimits", "HttpRequest", "TcpConnection", "serialize"]

_LINGER_S = 2.0
"""How long a closing HTTP connection keeps reading after its last answer."""
_WRITE_HIGH = 64 * 1024
_WRITE_LOW = 16 * 1024
_HANDSHAKE_HEADERS = frozenset({"content-length", "content-type", "connection", "date"})


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    """The bounds every connection on the client port lives within."""

    max_payload: int
    """Largest WebSocket message, and largest request body read (bytes)."""
    origins: Sequence[Origin | None]
    """Origins a WebSocket handshake may come from (``None``: no Origin header)."""
    http_timeout_s: float
    """Time for a request to arrive in full, and for a kept-alive connection to idle."""
    close_timeout_s: float
    """Time a WebSocket closing handshake may take before the TCP connection is aborted."""
    write_cap: int
    """Bytes queued for a WebSocket peer above which it is cut."""
    preauth_write_cap: int
    """The same bound until the application raises it (an unauthenticated peer)."""
    read_rate: float
    """Frames per second a WebSocket connection may make the gateway read."""
    read_burst: float
    flood_cut_s: float
    """Seconds over the read budget in a row after which a connection is cut."""
    max_head_bytes: int = 16 * 1024
    """Largest request line plus headers."""
    send_buffer: int = 0
    """The kernel's send buffer per connection (SO_SNDBUF; 0: the kernel sizes it)."""


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A request as the application sees it; header names are lower case."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    remote: str
    body: bytes = field(default=b"", repr=False)

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (lower case), or ``None``."""
        return next((v for k, v in self.headers if k == name), None)


class EdgeApp(Protocol):
    """What the client port asks of the application."""

    def route(self, request: HttpRequest) -> Upgrade | HttpAnswer | asyncio.Future[HttpAnswer]:
        """An upgrade to accept, the answer to write, or a future of the answer."""
        ...

    def admit(self, request: HttpRequest) -> HttpAnswer | None:
        """Just before a WebSocket is accepted: ``None``, or the refusal to answer."""
        ...

    def opened(self, ws: WebSocket, upgrade: Upgrade, request: HttpRequest) -> None:
        """A WebSocket is open; the application owns it from now on."""
        ...


def serialize(answer: HttpAnswer) -> bytes:
    """An answer as bytes, for the cases h11 cannot send one (the request never parsed)."""
    lines = [f"HTTP/1.1 {answer.status} {answer.reason}"]
    lines += [f"{name}: {value}" for name, value in answer.header_list()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + answer.body


def _response(answer: HttpAnswer, *, head_only: bool) -> list[h11.Event]:
    """The h11 events of an answer (no body for a ``HEAD``, its length still said)."""
    head = h11.Response(
        status_code=answer.status, reason=answer.reason.encode(), headers=answer.header_list()
    )
    body = [h11.Data(data=answer.body)] if answer.body and not head_only else []
    return [head, *body, h11.EndOfMessage()]


def _as_request(raw: h11.Request, body: bytes, remote: str) -> HttpRequest:
    return HttpRequest(
        method=raw.method.decode("ascii", "replace"),
        target=raw.target.decode("latin-1"),
        headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw.headers],
        remote=remote,
        body=body,
    )


def _handshake(request: HttpRequest, limits: EdgeLimits) -> h11.InformationalResponse | HttpAnswer:
    """websockets' own checks of an upgrade request (version, key, origin allowlist): the
    ``101`` to send, or the refusal to answer (and close)."""
    handshake = ServerProtocol(origins=limits.origins, max_size=limits.max_payload)
    response = handshake.accept(WsRequest(request.target, Headers(request.headers)))
    headers = response.headers.raw_items()
    if response.status_code != 101:
        extra = tuple((k, v) for k, v in headers if k.lower() not in _HANDSHAKE_HEADERS)
        return HttpAnswer(response.status_code, bytes(response.body), headers=extra, close=True)
    return h11.InformationalResponse(
        status_code=101, reason=b"Switching Protocols", headers=list(headers)
    )


def _open_websocket(transport: asyncio.Transport, limits: EdgeLimits) -> WebSocket:
    """The WebSocket on an upgraded connection, with its read budget and its first write
    cap (that of a peer not authenticated yet)."""
    budget = ReadBudget(
        rate=limits.read_rate, burst=limits.read_burst, cut_after_s=limits.flood_cut_s
    )
    return WebSocket(
        transport,
        max_size=limits.max_payload,
        budget=budget,
        close_timeout_s=limits.close_timeout_s,
        write_cap=min(limits.write_cap, limits.preauth_write_cap),
    )


class TcpConnection(asyncio.Protocol):
    """One client-port TCP connection (its asyncio protocol)."""

    def __init__(self, app: EdgeApp, limits: EdgeLimits) -> None:
        self._app = app
        self._limits = limits
        self._transport: asyncio.Transport | None = None
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_head_bytes)
        self._ws: WebSocket | None = None
        self._request: h11.Request | None = None
        self._body: list[bytes] = []
        self._body_size = 0
        # An answer the application gives later: nothing else is read meanwhile.
        self._waiting: asyncio.Future[HttpAnswer] | None = None
        self._received = False  # bytes came since the last answer: a timeout gets 408
        self._lingering = False
        self._held = False  # the client does not read its answers: stop reading requests
        # A request's time to arrive, an idle keep-alive, a lingering close.
        self._timer = Deadline(asyncio.get_running_loop(), self._timed_out)
        self._remote = "?"

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self._remote = str(peer[0]) if peer else "?"
        transport.set_write_buffer_limits(high=_WRITE_HIGH, low=_WRITE_LOW)
        if self._limits.send_buffer and (sock := transport.get_extra_info("socket")) is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._limits.send_buffer)
        self._timer.arm(self._limits.http_timeout_s)

    def data_received(self, data: bytes) -> None:
        if self._ws is not None:
            self._ws.feed(data)
        elif not self._lingering:
            self._received = True
            self._h11.receive_data(data)
            self._serve_http()

    def eof_received(self) -> bool:
        if self._ws is not None:
            self._ws.feed_eof()
        elif not self._lingering:
            self._h11.receive_data(b"")
            self._serve_http()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._timer.cancel()
        self._transport = None
        if self._ws is not None:
            self._ws.lost()
        if self._waiting is not None:
            self._waiting.cancel()  # the answer cannot be delivered any more

    def pause_writing(self) -> None:
        if self._ws is not None:
            self._ws.flow.pause()
        elif self._transport is not None:
            self._held = True  # pipelined requests wait until the answers are taken
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._ws is not None:
            self._ws.flow.resume()
        elif self._held and self._transport is not None:
            self._held = False
            if self._waiting is None:
                self._transport.resume_reading()
                self._serve_http()

    # -- HTTP -------------------------------------------------------------------------------

    def _serve_http(self) -> None:
        while self._ws is None and not self._lingering and not self._held and not self._waiting:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                status = exc.error_status_hint
                self._answer_raw(HttpAnswer(status, b"bad request\n", close=True))
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                self._request, self._body, self._body_size = event, [], 0
            elif isinstance(event, h11.Data):
                self._body.append(event.data)
                self._body_size += len(event.data)
                if self._body_size > self._limits.max_payload:
                    self._answer(HttpAnswer(413, b"request body too large\n", close=True))
                    return
            elif isinstance(event, h11.EndOfMessage):
                self._respond()
            elif isinstance(event, h11.ConnectionClosed):
                self._close()
                return

    def _respond(self) -> None:
        assert self._request is not None
        request = _as_request(self._request, b"".join(self._body), self._remote)
        self._body = []
        decision = self._app.route(request)
        if isinstance(decision, Upgrade):
            self._upgrade(decision, request)
        elif isinstance(decision, HttpAnswer):
            self._answer(decision)
        else:
            self._answer_later(decision)

    def _answer_later(self, answer: asyncio.Future[HttpAnswer]) -> None:
        """Read nothing more until the application has its answer, then write it."""
        self._waiting = answer
        self._timer.cancel()
        if self._transport is not None:
            self._transport.pause_reading()
        answer.add_done_callback(self._answered)

    def _answered(self, answer: asyncio.Future[HttpAnswer]) -> None:
        self._waiting = None
        if self._transport is None or answer.cancelled():
            return
        exc = answer.exception()
        self._answer(HttpAnswer(500, b"internal error\n", close=True) if exc else answer.result())
        if self._transport is not None and not self._lingering and not self._held:
            self._transport.resume_reading()
            self._serve_http()

    def _upgrade(self, upgrade: Upgrade, request: HttpRequest) -> None:
        refusal = self._app.admit(request)
        if refusal is not None:
            self._answer(refusal)
            return
        accepted = _handshake(request, self._limits)
        if isinstance(accepted, HttpAnswer):
            self._answer(accepted)
            return
        self._send(accepted)
        trailing, _closed = self._h11.trailing_data
        self._timer.cancel()
        assert self._transport is not None
        self._ws = ws = _open_websocket(self._transport, self._limits)
        self._app.opened(ws, upgrade, request)
        if trailing:
            ws.feed(trailing)

    def _answer(self, answer: HttpAnswer) -> None:
        head_only = self._request is not None and self._request.method == b"HEAD"
        try:
            for event in _response(answer, head_only=head_only):
                self._send(event)
        except h11.LocalProtocolError:
            self._close()
            return
        self._received = False
        h = self._h11
        if h.our_state is h11.MUST_CLOSE or h.their_state is h11.MUST_CLOSE:
            self._linger()
        elif h.our_state is h11.DONE and h.their_state is h11.DONE:
            h.start_next_cycle()
            self._request = None
            self._timer.arm(self._limits.http_timeout_s)

    def _answer_raw(self, answer: HttpAnswer) -> None:
        """Answer outside h11's state machine (the request could not be parsed)."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(serialize(answer))
        self._linger()

    def _send(self, event: h11.Event) -> None:
        data = self._h11.send(event)
        if data and self._transport is not None:
            self._transport.write(data)

    def _linger(self) -> None:
        """Half-close, then read and drop until the client closes (or a short while)."""
        self._lingering = True
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if transport.can_write_eof():
            transport.write_eof()
        self._timer.arm(_LINGER_S)

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _timed_out(self) -> None:
        if self._ws is not None:
            return
        if self._lingering or not self._received:
            self._close()
        else:
            self._answer_raw(HttpAnswer(408, b"request timeout\n", close=True))
