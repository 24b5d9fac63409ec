"""A small TCP proxy with faults switched at run time, like Toxiproxy, for local tests.

:class:`Mode` is the pure part: what the link does right now (``pass``, ``latency``,
``blackhole``, ``slow_close``, ``reset``) and what that means for one chunk of bytes or one
end of a connection. :class:`FaultProxy` only moves bytes: one listener on ``127.0.0.1``,
one upstream, and for each accepted client two one-way pipes that obey the current mode.
A switch applies at once to every open connection and to new ones.

* ``pass``: bytes flow both ways; an EOF is passed on as an EOF (half-close).
* ``latency(s)``: each chunk is delivered ``s`` after it arrived, both ways, in order.
* ``blackhole``: bytes are read (up to the buffer bound) but nothing is forwarded or
  answered, and no FIN or RST goes out: a link that died silently. New clients are
  accepted and frozen (their upstream is connected only once the link flows again). Back
  in ``pass``, what was held flows on, as after a healed partition; ends (FIN, RST) that
  happened meanwhile are passed on then.
* ``slow_close(s)``: an end (FIN or RST) from one side reaches the other ``s`` later; in
  between that side sees an open, silent connection.
* ``reset``: every connection is aborted with RST on both sides; new clients are accepted
  and reset at once.

Besides the mode, :meth:`FaultProxy.freeze_open` freezes the connections open at that
moment for good (a blackhole that never heals for them) while new ones follow the mode.

Each pipe buffers at most ``buffer_bytes``; beyond that the proxy stops reading from that
side, so a peer that keeps writing into a frozen link sees TCP backpressure, as it would
on a real one.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "BLACKHOLE",
    "PASS",
    "RESET",
    "TASK_PREFIX",
    "FaultProxy",
    "Mode",
    "latency",
    "slow_close",
]

ModeName = Literal["pass", "latency", "blackhole", "slow_close", "reset"]

_T = TypeVar("_T")
TASK_PREFIX = "faultproxy:"
"""Every task of a proxy is named with this prefix."""
_CHUNK = 64 * 1024
"""Bytes per read."""
_CLOSE_TIMEOUT = 1.0
"""Seconds a graceful close may take to flush before the connection is aborted."""


@dataclass(frozen=True, slots=True)
class Mode:
    """What the link does; build one with :data:`PASS`, :func:`latency`, :data:`BLACKHOLE`,
    :func:`slow_close` or :data:`RESET`."""

    name: ModeName
    delay_s: float = 0.0
    """``latency``: how long each chunk is held after it arrived."""
    close_hold_s: float = 0.0
    """``slow_close``: how long an end (FIN or RST) is held before it is passed on."""

    @property
    def forwards(self) -> bool:
        """Whether bytes and ends move at all (not in ``blackhole`` or ``reset``)."""
        return self.name not in ("blackhole", "reset")

    @property
    def resets(self) -> bool:
        """Whether every connection, open or new, is aborted with RST."""
        return self.name == "reset"

    def due_at(self, arrived: float) -> float | None:
        """When a chunk that arrived at ``arrived`` may be delivered; ``None``: not now."""
        if not self.forwards:
            return None
        return arrived + self.delay_s


PASS = Mode("pass")
BLACKHOLE = Mode("blackhole")
RESET = Mode("reset")


def latency(seconds: float) -> Mode:
    """Every chunk, both ways, is delivered ``seconds`` after it arrived (order kept)."""
    if seconds < 0:
        raise ValueError("latency must not be negative")
    return Mode("latency", delay_s=seconds)


def slow_close(seconds: float) -> Mode:
    """An end (FIN or RST) from one side reaches the other ``seconds`` later."""
    if seconds < 0:
        raise ValueError("hold must not be negative")
    return Mode("slow_close", close_hold_s=seconds)


class _End:
    """Marker of the end of one direction: an EOF (``clean``) or a reset."""

    __slots__ = ("clean",)

    def __init__(self, *, clean: bool) -> None:
        self.clean = clean


_EOF = _End(clean=True)
_RST = _End(clean=False)
_Item = tuple[float, bytes | _End]
"""(arrival time, bytes or an end)."""


class _Pipe:
    """A FIFO of chunks bounded in bytes: :meth:`put` waits while it holds ``capacity``."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: deque[_Item] = deque()
        self._size = 0
        self._changed = asyncio.Condition()

    async def put(self, item: _Item) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self._size < self._capacity)
            self._items.append(item)
            if isinstance(item[1], bytes):
                self._size += len(item[1])
            self._changed.notify_all()

    async def get(self) -> _Item:
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self._items))
            item = self._items.popleft()
            if isinstance(item[1], bytes):
                self._size -= len(item[1])
            self._changed.notify_all()
            return item


def _task(coro: Coroutine[Any, Any, _T], role: str) -> asyncio.Task[_T]:
    """A task named ``faultproxy:<role>``, so tests can tell that none is left over."""
    return asyncio.get_running_loop().create_task(coro, name=f"{TASK_PREFIX}{role}")


def _rst(writer: asyncio.StreamWriter) -> None:
    """Abort with RST (SO_LINGER 0), not FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close after flushing; abort when that takes longer than ``_CLOSE_TIMEOUT``."""
    writer.close()
    try:
        async with asyncio.timeout(_CLOSE_TIMEOUT):
            await writer.wait_closed()
    except TimeoutError:
        writer.transport.abort()
    except OSError:
        pass


class _Link:
    """One proxied connection: the client's streams, and the upstream's once connected."""

    __slots__ = ("client", "frozen", "task", "upstream")

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.frozen = False
        """Set by :meth:`FaultProxy.freeze_open`: nothing moves any more, whatever the mode."""
        self.upstream: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = None

    def reset(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                _rst(writer)


class FaultProxy:
    """A TCP proxy on ``host`` (a free port) in front of ``target``, a URL such as
    ``nats://127.0.0.1:4222``, ``redis://127.0.0.1:6379/0`` or
    ``postgresql://postgres@127.0.0.1:5432/chat``.

    ``await start()``, give clients :attr:`url` (``target`` with the proxy's host and
    port), switch faults with :meth:`set_mode` (or freeze the open connections with
    :meth:`freeze_open`), ``await stop()``. Counters for tests:
    :attr:`accepted` (clients accepted), :attr:`active` (connections open now) and
    :attr:`resets` (connections aborted by ``reset``).
    """

    def __init__(
        self,
        target: str,
        *,
        host: str = "127.0.0.1",
        buffer_bytes: int = 1024 * 1024,
        connect_timeout: float = 2.0,
    ) -> None:
        parts = urlsplit(target)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"target needs a host and a port: {target!r}")
        self.target = target
        self.upstream: tuple[str, int] = (parts.hostname, parts.port)
        self.host = host
        self._port = 0
        self._buffer = buffer_bytes
        self._connect_timeout = connect_timeout
        self._mode = PASS
        self._changed = asyncio.Event()
        """Set and replaced at every switch, to wake pipes that wait for the link."""
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self.accepted = 0
        self.resets = 0
        self._counted = asyncio.Event()
        """Set and replaced whenever a counter or :attr:`active` changes."""

    @property
    def port(self) -> int:
        """The listening port once started."""
        return self._port

    @property
    def url(self) -> str:
        """``target`` with the proxy's host and port: what clients should connect to."""
        parts = urlsplit(self.target)
        userinfo, _, _ = parts.netloc.rpartition("@")
        netloc = f"{userinfo}@" if userinfo else ""
        return urlunsplit(parts._replace(netloc=f"{netloc}{self.host}:{self._port}"))

    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def active(self) -> int:
        """Proxied connections open now."""
        return len(self._links)

    async def wait_until(self, predicate: Callable[[FaultProxy], bool]) -> None:
        """Wait until ``predicate(proxy)`` holds (checked whenever a counter changes)."""
        while not predicate(self):
            await self._counted.wait()

    def _count(self) -> None:
        counted, self._counted = self._counted, asyncio.Event()
        counted.set()

    async def start(self) -> None:
        """Listen on a free port of ``host``."""
        if self._server is not None:
            raise RuntimeError("proxy already started")
        self._server = await asyncio.start_server(self._on_client, self.host, 0, limit=_CHUNK)
        self._port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening, abort every connection and wait for every task."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        links, self._links = list(self._links), set()
        for link in links:
            link.reset()
            if link.task is not None:
                link.task.cancel()
        await asyncio.gather(*(x.task for x in links if x.task is not None), return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    def set_mode(self, mode: Mode) -> None:
        """Switch every open connection and every new one to ``mode`` now."""
        self._mode = mode
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        if mode.resets:
            links, self._links = list(self._links), set()
            for link in links:
                self.resets += 1
                link.reset()
                if link.task is not None:
                    link.task.cancel()
            self._count()

    def freeze_open(self) -> int:
        """Freeze every open connection for good (until :meth:`stop` or ``reset``), like a
        blackhole, while new connections follow the mode: what clients see when a server's
        host dies without a FIN and a standby takes over its address, or when a NAT or
        firewall forgets established flows. Returns how many connections were frozen."""
        for link in self._links:
            link.frozen = True
        return len(self._links)

    def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain callback runs inside connection_made: the link is tracked before a
        # switch or stop() can miss it.
        self.accepted += 1
        self._count()
        if self._mode.resets or self._server is None:
            self.resets += 1
            _rst(writer)
            return
        link = _Link(writer)
        self._links.add(link)
        link.task = _task(self._serve(link, reader), "link")
        link.task.add_done_callback(lambda _: self._forget(link))

    def _forget(self, link: _Link) -> None:
        self._links.discard(link)
        self._count()

    async def _serve(self, link: _Link, client: asyncio.StreamReader) -> None:
        up, down = _Pipe(self._buffer), _Pipe(self._buffer)
        tasks: list[asyncio.Task[Any]] = [_task(self._read(client, up), "read")]
        clean = False
        try:
            await self._flowing(link)
            try:
                async with asyncio.timeout(self._connect_timeout):
                    upstream, link.upstream = await asyncio.open_connection(
                        *self.upstream, limit=_CHUNK
                    )
            except (OSError, TimeoutError):
                return  # nothing listens upstream: the client gets a reset
            tasks.append(_task(self._read(upstream, down), "read"))
            writers = [
                _task(self._write(up, link.upstream, link), "write"),
                _task(self._write(down, link.client, link), "write"),
            ]
            tasks += writers
            pending = set(writers)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if not all(task.result() for task in done):
                    return  # a reset (or a failed write) ends both sides at once
            clean = True
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if clean:
                await asyncio.gather(
                    *(_close(w) for w in (link.client, link.upstream) if w is not None)
                )
            else:
                link.reset()

    async def _flowing(self, link: _Link) -> None:
        """Wait until ``link`` forwards (returns at once unless blackholed or frozen)."""
        while link.frozen or not self._mode.forwards:
            await self._changed.wait()

    async def _due(self, arrived: float, link: _Link) -> None:
        """Wait until a chunk of ``link`` that arrived at ``arrived`` may be delivered."""
        loop = asyncio.get_running_loop()
        while True:
            changed = self._changed
            due = None if link.frozen else self._mode.due_at(arrived)
            if due is not None and due <= loop.time():
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(due):
                    await changed.wait()

    @staticmethod
    async def _read(reader: asyncio.StreamReader, pipe: _Pipe) -> None:
        """Read one side into ``pipe`` until its end, which goes in last."""
        loop = asyncio.get_running_loop()
        try:
            while data := await reader.read(_CHUNK):
                await pipe.put((loop.time(), data))
        except OSError:
            await pipe.put((loop.time(), _RST))
        else:
            await pipe.put((loop.time(), _EOF))

    async def _write(self, pipe: _Pipe, writer: asyncio.StreamWriter, link: _Link) -> bool:
        """Deliver ``pipe`` to ``writer`` as the mode allows, until its end; ``False`` when
        the end was a reset or a write failed."""
        while True:
            data = await self._next(pipe, link)
            if isinstance(data, _End):
                hold = self._mode.close_hold_s
                if hold > 0:
                    await asyncio.sleep(hold)  # slow close: open and silent meanwhile
                    await self._flowing(link)
                if not data.clean:
                    return False
                if writer.can_write_eof() and not writer.is_closing():
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                return True
            try:
                writer.write(data)
                await writer.drain()
            except OSError:
                return False

    async def _next(self, pipe: _Pipe, link: _Link) -> bytes | _End:
        """The next chunk (or end) of ``pipe``, once the mode lets it through."""
        arrived, data = await pipe.get()
        await self._due(arrived, link)
        return data
