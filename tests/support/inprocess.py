"""The whole chat backend in one process, for unit tests of scenarios that cross services.

As faststream's ``TestNatsBroker`` runs an application's real handlers over an in-memory
broker, :class:`InProcessChat` runs:

* the session and history services' **real handlers** (``SessionHandlers``,
  ``HistoryHandlers`` with their ``BatchWriter``) on the **in-memory stores** that the
  stores' contract suites hold to Redis and Postgres;
* a **gateway wired by its own composition root** (``chat_gateway.main.assemble``), whose
  requests reach those handlers by subject (:class:`InProcessServices`, with the error
  boundary their NATS endpoints have) and whose rooms listen on a :class:`MemoryBus`;
* clients on **recording carriers** (:class:`RecordingCarrier`): what the gateway writes is
  recorded frame by frame, what the client sends is fed in; :class:`SocketIOPeer` and
  :class:`NativePeer` speak the two protocols over them.

So a join/send/leave/resume scenario runs in milliseconds, with no server and no socket;
what only real servers show (timing, failures, wire bytes on TCP) stays in
tests/integration. Every wait here waits on a condition, never on time.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import nats.errors

from chat_common.boundary import guarded
from chat_common.errors import ChatError, Unavailable
from chat_common.natsio import traced_publish
from chat_common.subjects import gateway_control, history_endpoint, session_endpoint
from chat_gateway.auth import JwtVerifier
from chat_gateway.carrier import Carrier, Limit
from chat_gateway.main import Gateway, assemble
from chat_gateway.pollrelay import PollRelay
from chat_gateway.protocol.wsframe import text_payloads
from chat_gateway.rooms.feed import Deliver, RoomSubscription
from chat_gateway.settings import GatewaySettings
from chat_history.fanout import publish_committed
from chat_history.handlers import HistoryHandlers
from chat_history.memorystate import InMemoryChatStateStore
from chat_history.memorystore import InMemoryMessageStore
from chat_history.statehandlers import STATE_ENDPOINTS, ChatStateHandlers
from chat_history.writer import BatchWriter
from chat_session.handlers import SessionHandlers
from chat_session.memorystore import InMemorySessionStore
from tests.support.bus import subject_matches

__all__ = [
    "InProcessChat",
    "InProcessServices",
    "MemoryBus",
    "NativePeer",
    "RecordingCarrier",
    "SocketIOPeer",
    "gateway_settings",
    "ok",
]

WAIT_S = 5.0
"""The longest any condition here is waited for (a test that waits longer has failed)."""

SESSION_ENDPOINTS = ("join", "leave", "disconnect", "detach", "resume", "heartbeat", "restore",
                     "take", "rooms", "presence", "members", "inspect")  # fmt: skip
HISTORY_ENDPOINTS = ("append", "append_batch", "fetch", *STATE_ENDPOINTS)


def gateway_settings(**overrides: Any) -> GatewaySettings:
    """Gateway settings for in-process tests: development mode, limits a test will not hit
    by accident; anything may be overridden by keyword."""
    values: dict[str, Any] = {
        "auth_mode": "dev",
        "instance_id": "gw-test",
        "rate_per_s": 10_000,
        "rate_burst": 10_000,
        "read_rate_per_s": 10_000,
        "read_burst": 10_000,
        "gap_fill_delay_ms": 1,
        "presence_interval_ms": 20,
        "host": "127.0.0.1",
        "port": 0,
    }
    return GatewaySettings(**(values | overrides))


# -- the bus ------------------------------------------------------------------------------


Callback = Callable[[Any], Awaitable[None]]


@dataclass(eq=False)
class _Subscription:
    bus: MemoryBus
    pattern: str
    deliver: Callable[[str, bytes, Mapping[str, str] | None, str], None]

    async def unsubscribe(self, limit: int = 0) -> None:
        self.bus.unsubscribe(self)


@dataclass
class BusMessage:
    """A message as a NATS subscription callback gets it."""

    bus: MemoryBus
    subject: str
    data: bytes
    headers: dict[str, str] | None
    reply: str

    async def respond(self, data: bytes) -> None:
        await self.bus.publish(self.reply, data)


@dataclass
class MemoryBus:
    """Subjects as NATS routes them, in memory. Each message reaches every matching
    subscription one loop turn later (as if it had crossed a network), in publish order.
    It offers the few calls of a NATS client that the gateway's poll relay and the
    services' publishers make (``publish``, ``subscribe`` with a callback, ``request``)."""

    published: list[tuple[str, bytes]] = field(default_factory=list)
    dropping: dict[str, int] = field(default_factory=dict)
    """subject -> how many of its next messages are lost on the way (a publisher that died
    between its commit and its publish)."""
    _subscriptions: list[_Subscription] = field(default_factory=list)
    _inboxes: Iterator[int] = field(default_factory=itertools.count)

    async def publish(
        self,
        subject: str,
        payload: bytes = b"",
        reply: str = "",
        headers: dict[str, str] | None = None,
    ) -> None:
        self._route(subject, payload, headers, reply)

    def _route(
        self, subject: str, payload: bytes, headers: dict[str, str] | None, reply: str
    ) -> int:
        self.published.append((subject, payload))
        if self.dropping.get(subject, 0) > 0:
            self.dropping[subject] -= 1
            return 0
        loop = asyncio.get_running_loop()
        matched = [sub for sub in self._subscriptions if subject_matches(sub.pattern, subject)]
        for sub in matched:
            loop.call_soon(sub.deliver, subject, payload, headers, reply)
        return len(matched)

    def listen(self, pattern: str, deliver: Deliver) -> _Subscription:
        """Hand every message on ``pattern`` to ``deliver`` (subject, data, headers)."""
        sub = _Subscription(self, pattern, lambda s, d, h, _reply: deliver(s, d, h))
        self._subscriptions.append(sub)
        return sub

    async def subscribe(
        self, subject: str, queue: str = "", cb: Callback | None = None
    ) -> _Subscription:
        """NATS's ``subscribe`` with a callback (each message handled in its own task)."""
        assert cb is not None
        tasks: set[asyncio.Task[None]] = set()

        def deliver(s: str, d: bytes, h: Mapping[str, str] | None, reply: str) -> None:
            task = asyncio.ensure_future(cb(BusMessage(self, s, d, dict(h or {}) or None, reply)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        sub = _Subscription(self, subject, deliver)
        self._subscriptions.append(sub)
        return sub

    async def request(
        self,
        subject: str,
        payload: bytes = b"",
        timeout: float = 0.5,
        old_style: bool = False,
        headers: dict[str, str] | None = None,
    ) -> BusMessage:
        """NATS's request/reply: no subscriber is ``NoRespondersError``, no answer in time
        ``TimeoutError``."""
        inbox = f"_INBOX.{next(self._inboxes)}"
        answer: asyncio.Future[BusMessage] = asyncio.get_running_loop().create_future()

        def deliver(s: str, d: bytes, h: Mapping[str, str] | None, _reply: str) -> None:
            if not answer.done():
                answer.set_result(BusMessage(self, s, d, dict(h or {}) or None, ""))

        sub = _Subscription(self, inbox, deliver)
        self._subscriptions.append(sub)
        try:
            if not self._route(subject, payload, headers, inbox):
                raise nats.errors.NoRespondersError
            try:
                return await asyncio.wait_for(answer, timeout)
            except TimeoutError:
                raise nats.errors.TimeoutError from None
        finally:
            self.unsubscribe(sub)

    async def flush(self, timeout: float = 10) -> None:
        return None

    def unsubscribe(self, sub: _Subscription) -> None:
        if sub in self._subscriptions:
            self._subscriptions.remove(sub)

    async def subscribe_subject(self, subject: str, deliver: Deliver) -> RoomSubscription:
        """The gateway's ``Subscribe`` over this bus."""
        return self.listen(subject, deliver)

    def subscriptions(self, pattern: str) -> int:
        return sum(1 for s in self._subscriptions if s.pattern == pattern)


# -- the services -------------------------------------------------------------------------


class InProcessServices:
    """The session and history services' real handlers on in-memory stores, answering
    requests by subject behind the error boundary their NATS endpoints have."""

    def __init__(
        self,
        bus: MemoryBus,
        *,
        presence_list_max: int = 100,
        resume_window_s: float = 120,
        heartbeat_ttl_s: float = 30,
        user_rate_per_s: float = 10_000,
        user_rate_burst: float = 10_000,
    ) -> None:
        self.session_store = InMemorySessionStore()
        self.message_store = InMemoryMessageStore()
        self.session = SessionHandlers(
            self.session_store,
            traced_publish(bus),
            resume_window_s=resume_window_s,
            heartbeat_ttl_s=heartbeat_ttl_s,
            user_rate_per_s=user_rate_per_s,
            user_rate_burst=user_rate_burst,
            presence_list_max=presence_list_max,
        )
        self.writer = BatchWriter(
            self.message_store,
            batch_max=256,
            linger_s=0,
            attempts=3,
            on_committed=publish_committed(bus),
        )
        self.history = HistoryHandlers(self.message_store, self.writer, max_page=200, max_text=4000)
        self.state_store = InMemoryChatStateStore(self.message_store)
        self.state = ChatStateHandlers(self.state_store, bus)
        routes: dict[str, Callable[[bytes], Awaitable[bytes]]] = {}
        for name in SESSION_ENDPOINTS:
            routes[session_endpoint(name)] = getattr(self.session, name)
        for name in HISTORY_ENDPOINTS:
            owner = self.state if name in STATE_ENDPOINTS else self.history
            routes[history_endpoint(name)] = getattr(owner, name)
        self._routes = routes
        self.requests: list[str] = []
        """The subject of every request, in order."""
        self.refuse: set[str] = set()
        """Subjects nobody answers (``UNAVAILABLE``, as with no responders)."""

    async def request(self, subject: str, body: bytes) -> bytes:
        """A request as ``chat_common.natsio.call`` makes it: the reply, or a ChatError."""
        self.requests.append(subject)
        handler = self._routes.get(subject)
        if handler is None or subject in self.refuse:
            raise Unavailable("no instance is serving this request")
        outcome = await guarded(lambda: handler(body), what="endpoint")
        if isinstance(outcome, ChatError):
            raise ChatError(outcome.code, outcome.message)  # what crosses the bus
        return outcome


# -- carriers and peers ---------------------------------------------------------------------


class RecordingCarrier:
    """A :class:`~chat_gateway.carrier.Carrier` with a test at the other end: what the
    gateway writes is recorded (one payload per frame), what the test feeds in is read.
    The peer is a perfect one unless told otherwise: it answers a close at once."""

    def __init__(self, *, write_cap: int = 1 << 20, answers_pings: bool = True) -> None:
        self._loop = asyncio.get_running_loop()
        self.write_cap = write_cap
        self.answers_pings = answers_pings
        """Whether the peer answers transport-level pings (its pong comes at once)."""
        self.sent: list[bytes] = []
        """Every frame's payload the gateway wrote, in order."""
        self.backlog = 0
        """Bytes the peer has not taken (what ``buffered`` reports): set it to play a
        client that stopped reading."""
        self.pings = 0
        self.closed_with: tuple[int, str] | None = None
        self.closed_by_us = False
        self.close_code_received: int | None = None
        self.last_pong = self._loop.time()
        self._inbox: list[str | bytes] = []
        self._open = True
        self._gone = self._loop.create_future()
        self._changed = asyncio.Event()
        self._on_limit: Callable[[Limit], None] | None = None
        self._on_moved: Callable[[Carrier], None] | None = None

    # -- the test's side --

    def feed(self, message: str | bytes) -> None:
        """The client sends ``message``."""
        self._inbox.append(message)
        self._touch()

    def hang_up(self, code: int | None = 1000) -> None:
        """The client closes (``None``: it drops without a close frame)."""
        if self._open:
            self.close_code_received = code
            self._open = False
            self._end()

    def move_to(self, other: Carrier) -> None:
        """The connection moves to ``other`` (as a long-polling session upgrading)."""
        self._open = False
        if self._on_moved is not None:
            self._on_moved(other)
        self._touch()

    async def wait_for(self, condition: Callable[[], bool], what: str = "") -> None:
        """Wait until ``condition()`` holds (checked after every change here)."""
        async with asyncio.timeout(WAIT_S):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    async def closed(self) -> tuple[int, str]:
        """Wait for the gateway to close this connection; its code and reason."""
        await self.wait_for(lambda: self.closed_with is not None)
        assert self.closed_with is not None
        return self.closed_with

    # -- the carrier --

    @property
    def open(self) -> bool:
        return self._open

    @property
    def buffered(self) -> int:
        return self.backlog

    def on_limit(self, callback: Callable[[Limit], None]) -> None:
        self._on_limit = callback

    def on_moved(self, callback: Callable[[Carrier], None]) -> None:
        self._on_moved = callback

    async def recv(self) -> str | bytes | None:
        while True:
            if self._inbox:
                return self._inbox.pop(0)
            if not self._open:
                return None
            self._changed.clear()
            await self._changed.wait()

    def write(self, data: bytes) -> bool:
        if not self._open:
            return False
        self.sent += text_payloads(data)
        if self.backlog > self.write_cap:
            self.cut("overflow", 4008, "slow consumer")
        self._touch()
        return True

    def send_text(self, payload: bytes) -> bool:
        if not self._open:
            return False
        self.sent.append(payload)
        if self.backlog > self.write_cap:
            self.cut("overflow", 4008, "slow consumer")
        self._touch()
        return True

    def ping(self) -> None:
        self.pings += 1
        if self.answers_pings:
            self.last_pong = self._loop.time()
        self._touch()

    async def drain(self) -> None:
        return None

    def close(self, code: int, reason: str = "", *, timeout_s: float | None = None) -> bool:
        if not self._open:
            return False
        self._open = False
        self.closed_by_us = True
        self.closed_with = (code, reason)
        self._inbox.clear()
        self._end()
        return True

    def cut(self, limit: Limit, code: int, reason: str, *, grace_s: float | None = None) -> None:
        on_limit = self._on_limit
        if self.close(code, reason) and on_limit is not None:
            on_limit(limit)

    def abort(self) -> None:
        self._open = False
        self._end()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._gone)

    def _end(self) -> None:
        if not self._gone.done():
            self._gone.set_result(None)
        self._touch()

    def _touch(self) -> None:
        self._changed.set()


def _has(data: object, fields: Mapping[str, object]) -> bool:
    return not fields or (
        isinstance(data, dict) and all(data.get(k) == v for k, v in fields.items())
    )


class _Peer:
    """What both protocols' peers share: an unread queue of the frames received."""

    def __init__(self, carrier: RecordingCarrier, task: asyncio.Task[None]) -> None:
        self.carrier = carrier
        self.task = task
        """The connection's task at the gateway: done once its cleanup has run."""
        self._read = 0
        self._unread: list[bytes] = []
        self._ids = itertools.count(1)

    def _pull(self) -> None:
        sent = self.carrier.sent
        self._unread += sent[self._read :]
        self._read = len(sent)

    async def frame(self, match: Callable[[bytes], bool], what: str = "a frame") -> bytes:
        """The first unread frame that ``match``es (others stay unread)."""
        found: list[bytes] = []

        def seen() -> bool:
            self._pull()
            for i, frame in enumerate(self._unread):
                if match(frame):
                    found.append(self._unread.pop(i))
                    return True
            return False

        try:
            await self.carrier.wait_for(seen, what)
        except TimeoutError:
            raise AssertionError(f"no {what} among {self._unread!r}") from None
        return found[0]

    async def ended(self) -> None:
        """Wait until the gateway is done with this connection (its cleanup included)."""
        async with asyncio.timeout(WAIT_S):
            await asyncio.shield(self.task)

    def unread(self) -> list[bytes]:
        self._pull()
        frames, self._unread = self._unread, []
        return frames


class SocketIOPeer(_Peer):
    """A Socket.IO v5 client over a recording carrier."""

    handshake_frame = b""
    """The Engine.IO open packet, as it came."""

    async def handshake(self) -> dict[str, Any]:
        """The Engine.IO open packet."""
        self.handshake_frame = await self.frame(lambda f: f.startswith(b"0{"), "open packet")
        return json.loads(self.handshake_frame[1:])

    async def connect(self, auth: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """CONNECT to ``/``; the reply (``40{...}``) or the refusal (``44{...}``)."""
        self.carrier.feed("40" + (json.dumps(auth) if auth is not None else ""))
        reply = await self.frame(lambda f: f[:2] in (b"40", b"44"), "CONNECT reply")
        return json.loads(reply[2:])

    def emit(self, event: str, data: object = None, *, ack: int | None = None) -> None:
        args = [event] if data is None else [event, data]
        self.carrier.feed(f"42{'' if ack is None else ack}{json.dumps(args)}")

    async def call(self, event: str, data: object = None) -> dict[str, Any]:
        """Emit with an ack id; the ack's argument."""
        ack = next(self._ids)
        self.emit(event, data, ack=ack)
        prefix = f"43{ack}[".encode()
        frame = await self.frame(lambda f: f.startswith(prefix), f"ack {ack} of {event}")
        result: dict[str, Any] = json.loads(frame[len(prefix) - 1 :])[0]
        return result

    async def event(self, name: str, **fields: object) -> list[Any]:
        """The next ``name`` event's arguments (whose first has these ``fields``)."""
        prefix = b'42["' + name.encode() + b'"'

        def match(frame: bytes) -> bool:
            return frame.startswith(prefix) and _has(json.loads(frame[2:])[1], fields)

        args: list[Any] = json.loads((await self.frame(match, f"{name} event"))[2:])[1:]
        return args


class NativePeer(_Peer):
    """A client of the native JSON protocol over a recording carrier."""

    def send(self, frame: Mapping[str, Any]) -> None:
        self.carrier.feed(json.dumps(frame))

    async def call(self, event: str, data: object = None) -> dict[str, Any]:
        """Send with an id; the ack's data."""
        ack = next(self._ids)
        self.send({"type": event, "id": ack, "data": data})
        prefix = b'{"type":"ack","id":%d,' % ack
        frame = await self.frame(lambda f: f.startswith(prefix), f"ack {ack} of {event}")
        result: dict[str, Any] = json.loads(frame)["data"]
        return result

    async def event(self, name: str, **fields: object) -> Any:
        """The next ``name`` event's data (with these ``fields``)."""
        prefix = b'{"type":' + json.dumps(name).encode() + b","

        def match(frame: bytes) -> bool:
            return frame.startswith(prefix) and _has(json.loads(frame)["data"], fields)

        return json.loads(await self.frame(match, f"{name} event"))["data"]


# -- the whole thing ------------------------------------------------------------------------


class InProcessChat:
    """Services, bus and gateways in this process; an async context manager. With
    ``listen``, each gateway's client port listens on 127.0.0.1 (a free port: see
    :meth:`url`), so real clients can connect in process; with ``relay``, gateways relay
    long-polling requests to each other over the bus."""

    def __init__(
        self,
        settings: GatewaySettings | None = None,
        *,
        verifier: JwtVerifier | None = None,
        listen: bool = False,
        relay: bool = False,
        **services: Any,
    ) -> None:
        self.settings = settings or gateway_settings()
        self.bus = MemoryBus()
        self.services = InProcessServices(self.bus, **services)
        self._verifier = verifier
        self._listen = listen
        self._relay = relay
        self.gateways: list[Gateway] = []
        self._relays: list[PollRelay] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> InProcessChat:
        self._tasks.append(asyncio.create_task(self.services.writer.run(), name="writer"))
        self.gateway = await self.add_gateway(self.settings)
        return self

    async def add_gateway(self, settings: GatewaySettings) -> Gateway:
        """One more gateway on the same bus and services (its own instance id)."""
        relay = PollRelay(self.bus, timeout_s=5) if self._relay else None  # type: ignore[arg-type]
        gw = assemble(
            settings,
            request=self.services.request,
            subscribe=self.bus.subscribe_subject,
            publish=self.bus.publish,
            verifier=self._verifier,
            relay=relay,
        )
        self.bus.listen(
            gateway_control(settings.instance_id), lambda _s, data, _h: gw.registry.take_over(data)
        )
        if relay is not None:
            await relay.serve(gw.port.answer_relayed)
            self._relays.append(relay)
        if self._listen:
            await gw.port.start()
        self.gateways.append(gw)
        return gw

    def url(self, gateway: Gateway | None = None) -> str:
        """``http://127.0.0.1:<port>`` of a listening gateway (the first by default)."""
        return f"http://127.0.0.1:{(gateway or self.gateway).port.port}"

    async def until(self, condition: Callable[[], bool]) -> None:
        """Wait until ``condition()`` holds, looking again at every turn of the event loop:
        for a state at the gateway's end of a real socket, which no event announces."""
        async with asyncio.timeout(WAIT_S):
            while not condition():  # noqa: ASYNC110 - no event to await (see the docstring)
                await asyncio.sleep(0)

    def run(self, coro: Awaitable[None]) -> None:
        """Run a gateway loop (heartbeat, watchdog) until the harness closes."""
        self._tasks.append(asyncio.ensure_future(coro))

    async def __aexit__(self, *_exc: object) -> None:
        for gw in self.gateways:
            await gw.port.stop_accepting()
            await gw.drain.close_clients()
            await gw.appender.drain()
            await gw.close_users()
        for relay in self._relays:
            await relay.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def socketio(
        self,
        *,
        gateway: Gateway | None = None,
        remote: str = "10.0.0.1",
        carrier: RecordingCarrier | None = None,
    ) -> SocketIOPeer:
        """A Socket.IO client connected over WebSocket (its handshake read)."""
        gw, carrier = gateway or self.gateway, carrier or RecordingCarrier()
        serving = gw.connections.socketio(carrier, remote=remote)
        peer = SocketIOPeer(carrier, gw.port.serve(carrier, remote=remote, serving=serving))
        await peer.handshake()
        return peer

    async def native(
        self,
        *,
        gateway: Gateway | None = None,
        authorization: str = "",
        remote: str = "10.0.0.1",
        carrier: RecordingCarrier | None = None,
    ) -> NativePeer:
        """A native-protocol client (``authorization``: its handshake header)."""
        gw, carrier = gateway or self.gateway, carrier or RecordingCarrier()
        serving = gw.connections.native(carrier, remote=remote, authorization=authorization)
        return NativePeer(carrier, gw.port.serve(carrier, remote=remote, serving=serving))


async def ok(peer: NativePeer | SocketIOPeer, event: str, data: object) -> dict[str, Any]:
    """``event``'s ack, which must be ``ok`` (its text is the assertion's message)."""
    ack = await peer.call(event, data)
    assert ack["ok"] is True, ack
    return ack
