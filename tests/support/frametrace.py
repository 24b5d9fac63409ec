"""A recorder of the exact bytes a gateway sends, for golden-file tests of its wire behaviour.

A scenario drives raw TCP connections (HTTP requests written by hand, WebSocket frames built
by :func:`tests.support.rawws.frame`) strictly one step after another and writes everything
into one :class:`Trace`: what each connection sent and, in arrival order, what it received
(an HTTP response's status line, headers and body; a WebSocket frame's opcode and payload,
a close frame as its code and reason). Nothing is read in the background: a frame is
recorded when the scenario reads it, so the trace's order is the scenario's order, and a
step waits (on the frames it expects, never on a clock) before the next one starts.

Values that are random per run are replaced when the trace is rendered
(:class:`Normaliser`): each distinct value gets a placeholder numbered in order of first
appearance (``<sid-1>``, ``<session-2>``, ``<token-2>``, ``<msg-3>``, ``<accept-1>``), so
values that are equal stay visibly equal (a ``pid`` reads ``<session-1>.<token-1>``);
timestamps (a message's ``ts``, an inbox room's ``lastActivity``) become ``<ts>`` (several
messages may share one, so they are not numbered); an inbox cursor reads
``<listing-1>:2`` (its listing id is random, its offset is not).

Left out of the trace, because they depend on the clock rather than on the scenario:
heartbeats (Engine.IO pings on a Socket.IO WebSocket, WebSocket pings on ``/ws``, each
answered as a client would) and the ``Date`` header.
An Engine.IO ping inside a long-polling body is not filtered: it would change the body's
bytes, so the recorder stops with an error instead (it means a step took longer than
``pingInterval``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import re
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from tests.support.rawws import BINARY, CLOSE, PING, PONG, TEXT, frame

__all__ = [
    "HttpClient",
    "HttpResponse",
    "Normaliser",
    "PendingResponse",
    "Trace",
    "TracedWs",
    "render_bytes",
]

_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_OPCODES = {0x0: "cont", TEXT: "text", BINARY: "binary", CLOSE: "close", PING: "ping", PONG: "pong"}
_SKIPPED_HEADERS = frozenset({"date"})
DEFAULT_TIMEOUT = 15.0


# -- pure: rendering and normalising --------------------------------------------------------


def render_bytes(data: bytes) -> str:
    """Bytes as one line of text: UTF-8 as is, control characters as ``\\xNN`` (Engine.IO's
    record separator reads ``\\x1e``), undecodable bytes as ``\\xNN`` too."""
    text = data.decode("utf-8", errors="backslashreplace")
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\x{ord(m[0]):02x}", text)


_PLACEHOLDER_KINDS = ("sid", "session", "token", "msg", "accept", "listing")

# Where random values show up, and what kind each is; one pattern per kind of context.
# ``pid`` is ``<sessionId>.<resumeToken>``; message ids are the only quoted 32-hex ``id``s.
_DISCOVER = re.compile(
    r'"pid":"(?P<pid_session>[0-9a-f]{32})\.(?P<pid_token>[A-Za-z0-9_-]{43})"'
    r'|"sid":"(?P<sid>[^"]+)"'
    r"|[?&]sid=(?P<qsid>[A-Za-z0-9_-]+)"
    r'|"sessionId":"(?P<session>[^"]+)"'
    r'|"resumeToken":"(?P<token>[^"]+)"'
    r'|"id":"(?P<msg>[0-9a-f]{32})"'
    r'|"(?:next|after)":"(?P<listing>[0-9a-f]{32}):'
    r"|Sec-WebSocket-Accept: (?P<accept>\S+)"
)
_GROUP_KIND = {
    "pid_session": "session",
    "pid_token": "token",
    "sid": "sid",
    "qsid": "sid",
    "session": "session",
    "token": "token",
    "msg": "msg",
    "accept": "accept",
    "listing": "listing",
}
# Values that are never equal on purpose (clock readings): one unnumbered placeholder each.
_UNNUMBERED = (
    (re.compile(r'"ts":"[^"]*"'), '"ts":"<ts>"'),
    (re.compile(r'"lastActivity":"[^"]*"'), '"lastActivity":"<ts>"'),
    (re.compile(r'"sentAt":[0-9.eE+-]+'), '"sentAt":"<sentAt>"'),
)


@dataclass
class Normaliser:
    """Replaces random values with numbered placeholders, in order of first appearance.

    Feed it the trace's lines in order (:meth:`line`): a value first seen in a known
    context (``"sid":"..."``, ``"pid":"..."``, ``Sec-WebSocket-Accept: ...``) gets the next
    number of its kind, and every later occurrence of it, in any context, the same
    placeholder. ``literals`` are replaced as given (the gateway's port).
    """

    literals: dict[str, str] = field(default_factory=dict)
    _names: dict[str, str] = field(default_factory=dict)
    _counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_PLACEHOLDER_KINDS, 0))

    def line(self, text: str) -> str:
        for match in _DISCOVER.finditer(text):
            for group, value in match.groupdict().items():
                if value is not None and value not in self._names:
                    kind = _GROUP_KIND[group]
                    self._counts[kind] += 1
                    self._names[value] = f"<{kind}-{self._counts[kind]}>"
        for value in sorted(self._names, key=len, reverse=True):
            text = text.replace(value, self._names[value])
        for pattern, replacement in _UNNUMBERED:
            text = pattern.sub(replacement, text)
        for value, replacement in self.literals.items():
            text = text.replace(value, replacement)
        return text

    def lines(self, texts: Sequence[str]) -> list[str]:
        return [self.line(t) for t in texts]


# -- the trace ------------------------------------------------------------------------------


class Trace:
    """The scenario's record: numbered steps, and per step the lines of each connection in
    the order the scenario sent and read them."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self.steps = 0
        self.frames_sent = 0
        self.frames_received = 0
        self.http_exchanges = 0
        self.literals: dict[str, str] = {}

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[None]:
        """A step of the scenario; its lines follow its title."""
        self.steps += 1
        self._lines.append("")
        self._lines.append(f"== {self.steps}. {title}")
        yield

    def note(self, text: str) -> None:
        """A line that is not on the wire (what the scenario waited for, and why)."""
        self._lines.append(f"   # {text}")

    def add(self, who: str, arrow: str, text: str) -> None:
        self._lines.append(f"{who:<8} {arrow} {text}")

    def render(self) -> str:
        """The trace as text, random values replaced (:class:`Normaliser`), and a last
        line that counts what it holds."""
        normaliser = Normaliser(literals=dict(self.literals))
        summary = (
            f"== end: {self.steps} steps, {self.frames_sent} frames sent, "
            f"{self.frames_received} frames received, {self.http_exchanges} HTTP requests "
            "(WebSocket upgrades included)"
        )
        lines = [*normaliser.lines(self._lines), "", summary]
        return "\n".join(lines).lstrip("\n") + "\n"


# -- HTTP over raw TCP ----------------------------------------------------------------------


@dataclass(frozen=True)
class HttpResponse:
    status_line: str
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def status(self) -> int:
        return int(self.status_line.split(" ", 2)[1])

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


async def _read_head(reader: asyncio.StreamReader) -> tuple[str, list[tuple[str, str]]]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head[:-4].decode("latin-1").split("\r\n")
    headers = []
    for line in lines:
        name, _, value = line.partition(":")
        headers.append((name, value.strip()))
    return status_line, headers


def _record_head(trace: Trace, who: str, status_line: str, headers: list[tuple[str, str]]) -> None:
    trace.add(who, "←", status_line)
    for name, value in headers:
        if name.lower() not in _SKIPPED_HEADERS:
            trace.add(who, "←", f"  {name}: {value}")


class PendingResponse:
    """An HTTP request on the wire whose response is recorded when the scenario awaits it
    (a long poll the server holds while the scenario does other things)."""

    def __init__(self, trace: Trace, who: str, task: asyncio.Task[HttpResponse]) -> None:
        self._trace, self._who, self._task = trace, who, task

    async def response(self, timeout: float = DEFAULT_TIMEOUT) -> HttpResponse:
        response = await asyncio.wait_for(self._task, timeout)
        _record_head(self._trace, self._who, response.status_line, response.headers)
        self._trace.add(self._who, "←", f"  body {render_bytes(response.body)}")
        if response.header("Content-Type") == "text/plain; charset=UTF-8" and (
            b"\x1e2\x1e" in b"\x1e" + response.body + b"\x1e"
        ):
            raise AssertionError(
                "an Engine.IO ping fell into a long-polling body: a step took longer than "
                "pingInterval, and the trace depends on the clock"
            )
        return response


class HttpClient:
    """HTTP/1.1 requests written by hand, one TCP connection each (closed after the
    response), recorded under the name ``who``."""

    def __init__(self, trace: Trace, who: str, base_url: str) -> None:
        parts = urlsplit(base_url)
        self._trace, self._who = trace, who
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80

    async def send(self, method: str, target: str, body: bytes = b"") -> PendingResponse:
        """Connect and write the request; its response is read in the background and
        recorded by :meth:`PendingResponse.response` (a long poll the server holds)."""
        self._trace.add(self._who, "→", f"{method} {target}")
        if body:
            self._trace.add(self._who, "→", f"  body {render_bytes(body)}")
        self._trace.http_exchanges += 1
        reader, writer = await asyncio.open_connection(self._host, self._port)
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self._host}:{self._port}"]
        if method == "POST":
            lines += ["Content-Type: text/plain;charset=UTF-8", f"Content-Length: {len(body)}"]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await writer.drain()
        task = asyncio.ensure_future(self._response(reader, writer))
        return PendingResponse(self._trace, self._who, task)

    async def request(self, method: str, target: str, body: bytes = b"") -> HttpResponse:
        return await (await self.send(method, target, body)).response()

    @staticmethod
    async def _response(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> HttpResponse:
        try:
            status_line, headers = await _read_head(reader)
            length = next((int(v) for k, v in headers if k.lower() == "content-length"), 0)
            return HttpResponse(status_line, headers, await reader.readexactly(length))
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


# -- WebSocket over raw TCP -----------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    opcode: int
    payload: bytes
    flags: str
    """``""`` for a plain server frame (FIN set, no RSV bits, unmasked); else what differs."""

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8", errors="replace")

    def describe(self) -> str:
        name = _OPCODES.get(self.opcode, f"opcode-{self.opcode:#x}")
        flags = f" [{self.flags}]" if self.flags else ""
        if self.opcode == CLOSE:
            if len(self.payload) < 2:
                return f"close{flags} (no status code)"
            (code,) = struct.unpack("!H", self.payload[:2])
            return f"close{flags} {code} {render_bytes(self.payload[2:])!s}".rstrip()
        if self.opcode == TEXT:
            return f"text{flags} {render_bytes(self.payload)}"
        return f"{name}{flags} {self.payload.hex()}".rstrip()


class TracedWs:
    """One WebSocket client connection that records what it sends and what it reads."""

    def __init__(
        self,
        trace: Trace,
        who: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        engineio: bool,
    ) -> None:
        self._trace, self.who = trace, who
        self._reader, self._writer = reader, writer
        self._engineio = engineio
        """Answer Engine.IO pings (``2``) without recording them."""

    @classmethod
    async def connect(
        cls, trace: Trace, who: str, base_url: str, target: str, *, engineio: bool
    ) -> TracedWs:
        """Open the WebSocket (a fresh random key, as clients do) and record the 101."""
        parts = urlsplit(base_url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        reader, writer = await asyncio.open_connection(host, port)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {target} HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        trace.add(who, "→", f"GET {target} (WebSocket upgrade)")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        status_line, headers = await asyncio.wait_for(_read_head(reader), DEFAULT_TIMEOUT)
        _record_head(trace, who, status_line, headers)
        trace.http_exchanges += 1
        if " 101 " not in status_line:
            writer.close()
            raise ConnectionError(f"handshake refused: {status_line}")
        accept = next(v for k, v in headers if k.lower() == "sec-websocket-accept")
        expected = base64.b64encode(hashlib.sha1(key.encode() + _WS_GUID).digest()).decode()
        assert accept == expected, "Sec-WebSocket-Accept does not answer the key"
        return cls(trace, who, reader, writer, engineio=engineio)

    # -- sending --

    def send_text(self, text: str) -> None:
        self._writer.write(frame(TEXT, text.encode()))
        self._trace.add(self.who, "→", f"text {render_bytes(text.encode())}")
        self._trace.frames_sent += 1

    def send_json(self, value: object) -> None:
        """A native frame: compact JSON, as clients send it."""
        self.send_text(json.dumps(value, separators=(",", ":"), ensure_ascii=False))

    def send_close(self, code: int, reason: str = "") -> None:
        self._writer.write(frame(CLOSE, struct.pack("!H", code) + reason.encode()))
        self._trace.add(self.who, "→", f"close {code} {reason}".rstrip())
        self._trace.frames_sent += 1

    async def drop(self) -> None:
        """Close the TCP connection without a close frame (a client that vanished)."""
        self._trace.add(self.who, "→", "(TCP connection closed, no close frame)")
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()

    # -- reading --

    async def _next(self) -> Frame | None:
        """The next frame (``None``: the server closed the TCP connection)."""
        try:
            b0, b1 = await self._reader.readexactly(2)
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise
            return None
        size = b1 & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", await self._reader.readexactly(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", await self._reader.readexactly(8))
        mask = await self._reader.readexactly(4) if b1 & 0x80 else b""
        payload = await self._reader.readexactly(size)
        if mask:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        flags = [] if b0 & 0x80 else ["fin=0"]
        if b0 & 0x70:
            flags.append(f"rsv={(b0 & 0x70) >> 4}")
        if mask:
            flags.append("masked")
        return Frame(b0 & 0x0F, payload, ",".join(flags))

    async def _next_recorded(self) -> Frame | None:
        """The next frame that is not a heartbeat, recorded (heartbeats are answered)."""
        while True:
            got = await self._next()
            if got is None:
                self._trace.add(self.who, "←", "(TCP connection closed)")
                return None
            if got.opcode == PING:
                self._writer.write(frame(PONG, got.payload))
                continue
            if self._engineio and got.opcode == TEXT and got.payload == b"2":
                self._writer.write(frame(TEXT, b"3"))
                continue
            self._trace.add(self.who, "←", got.describe())
            self._trace.frames_received += 1
            return got

    async def expect(self, *prefixes: str, timeout: float = DEFAULT_TIMEOUT) -> list[str]:
        """Read until a text frame starting with each prefix has come (in any order; a
        prefix given twice wants two); every text frame read, in arrival order. A frame
        that matches no prefix is recorded all the same (the golden file then shows it)."""
        wanted = list(prefixes)
        texts: list[str] = []
        async with asyncio.timeout(timeout):
            while wanted:
                got = await self._next_recorded()
                if got is None or got.opcode == CLOSE:
                    raise ConnectionError(f"{self.who}: closed while waiting for {wanted}")
                if got.opcode != TEXT:
                    continue
                texts.append(got.text)
                for prefix in wanted:
                    if got.text.startswith(prefix):
                        wanted.remove(prefix)
                        break
        return texts

    async def expect_close(self, *, answer: bool, timeout: float = DEFAULT_TIMEOUT) -> int | None:
        """Read until the server's close frame, then (``answer``) echo its code as a client
        does, and read until the server ends the TCP connection; the close code."""
        code: int | None = None
        async with asyncio.timeout(timeout):
            while True:
                got = await self._next_recorded()
                if got is None:
                    raise ConnectionError(f"{self.who}: TCP closed before a close frame")
                if got.opcode == CLOSE:
                    if len(got.payload) >= 2:
                        (code,) = struct.unpack("!H", got.payload[:2])
                    break
            if answer and code is not None:
                self.send_close(code)
            if await self._next_recorded() is not None:
                raise AssertionError(f"{self.who}: a frame after the close frame")
        self._writer.close()
        return code
