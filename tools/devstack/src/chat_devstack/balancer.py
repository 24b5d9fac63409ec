"""A small TCP load balancer: several gateways behind one address, like nginx in production.

:class:`RoundRobin` is the pure choice of which backends to try, in which order.
:class:`TcpBalancer` accepts clients, connects each to the first backend in that order that
accepts within ``connect_timeout`` (a client is closed when none does), and then only pumps
bytes both ways, so HTTP and WebSocket upgrades pass through untouched.

With a ``ready`` probe (a gateway's ``/readyz``, as Kubernetes routes a Service only to
ready pods), each backend is probed every ``probe_interval`` and new clients go to the
ready ones first; an unready backend is tried only when no ready one accepts.

End of a connection: an EOF from one side is passed on as an EOF to the other (half-close)
once all bytes before it were written; the pair is closed when both directions have ended,
when either side fails, or when the balancer stops.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence

__all__ = ["Backend", "RoundRobin", "TcpBalancer"]

Backend = tuple[str, int]
"""``(host, port)`` of one backend."""
Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]

_CHUNK = 256 * 1024
"""Bytes per read; also the stream buffer limit."""
_CLOSE_TIMEOUT = 1.0
"""Seconds a graceful close may take to flush before the connection is aborted."""


class RoundRobin:
    """Each call to :meth:`next_order` starts one backend further along the list."""

    def __init__(self, backends: Sequence[Backend] = ()) -> None:
        self._backends: tuple[Backend, ...] = tuple(backends)
        self._next = 0

    @property
    def backends(self) -> tuple[Backend, ...]:
        """The current backends, in configured order."""
        return self._backends

    def set_backends(self, backends: Sequence[Backend]) -> None:
        """Replace the backends; the rotation continues from the same position."""
        self._backends = tuple(backends)

    def next_order(self) -> list[Backend]:
        """Every backend once, the preferred one first; ``[]`` when there are none."""
        count = len(self._backends)
        if count == 0:
            return []
        start = self._next % count
        self._next = start + 1
        return [*self._backends[start:], *self._backends[:start]]


class TcpBalancer:
    """Round-robin TCP proxy; ``await start()``, connect to :attr:`url`, ``await stop()``.

    Counters for tests: :attr:`connections` (clients proxied, per backend),
    :attr:`failures` (failed connect attempts, per backend), :attr:`rejected` (clients
    closed because no backend accepted) and :attr:`active` (open proxied pairs).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        backends: Sequence[Backend],
        connect_timeout: float = 1.0,
        ready: Callable[[Backend], Awaitable[bool]] | None = None,
        probe_interval: float = 0.5,
    ) -> None:
        self.host = host
        self._ready = ready
        self._probe_interval = probe_interval
        self.unready: set[Backend] = set()
        """Backends whose last probe said not ready (or failed)."""
        self._prober: asyncio.Task[None] | None = None
        self._port = port
        self.connect_timeout = connect_timeout
        self._order = RoundRobin(backends)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._clients: set[asyncio.StreamWriter] = set()
        self._stopping = False
        self.connections: Counter[Backend] = Counter()
        self.failures: Counter[Backend] = Counter()
        self.rejected = 0
        self.active = 0

    @property
    def port(self) -> int:
        """The listening port once started (the configured one before)."""
        return self._port

    @property
    def url(self) -> str:
        """``http://HOST:PORT/``."""
        return f"http://{self.host}:{self._port}/"

    @property
    def backends(self) -> tuple[Backend, ...]:
        """The current backends."""
        return self._order.backends

    def set_backends(self, backends: Sequence[Backend]) -> None:
        """Use these backends for new clients; open connections are left alone."""
        self._order.set_backends(backends)

    async def start(self) -> None:
        """Listen on ``host:port``; raises ``OSError`` when the port cannot be bound."""
        if self._server is not None:
            raise RuntimeError("balancer already started")
        self._stopping = False
        self._server = await asyncio.start_server(
            self._on_client, self.host, self._port, limit=_CHUNK
        )
        self._port = self._server.sockets[0].getsockname()[1]
        if self._ready is not None:
            self._prober = asyncio.ensure_future(self._probe())

    async def _probe(self) -> None:
        assert self._ready is not None
        while not self._stopping:
            for backend in self.backends:
                try:
                    # asyncio.timeout, not wait_for: on Python 3.11 wait_for loses the
                    # cancellation from stop() when the probe completes at that moment
                    # (python/cpython#86296), and stop() then waits for this loop forever.
                    async with asyncio.timeout(self._probe_interval * 2):
                        ok = await self._ready(backend)
                except Exception:  # unreachable, slow: not ready
                    ok = False
                if ok:
                    self.unready.discard(backend)
                else:
                    self.unready.add(backend)
            await asyncio.sleep(self._probe_interval)

    async def stop(self) -> None:
        """Stop listening, close every proxied connection and wait for their tasks."""
        self._stopping = True
        if self._prober is not None:
            self._prober.cancel()
            await asyncio.gather(self._prober, return_exceptions=True)
            self._prober = None
        server, self._server = self._server, None
        if server is not None:
            server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # Tasks cancelled before they ran never closed their client.
        clients, self._clients = list(self._clients), set()
        # A writer whose pump task was cancelled may report that as its own close result.
        await asyncio.gather(*(_close(w, abort=True) for w in clients), return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain callback runs inside connection_made, so the task is tracked before
        # stop() can miss it.
        if self._stopping:
            writer.transport.abort()
            return
        self._clients.add(writer)
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers = [writer]
        clean = False
        try:
            upstream = await self._connect()
            if upstream is None:
                self.rejected += 1
                clean = True
                return
            writers.append(upstream[1])
            self.active += 1
            try:
                clean = await _pump_both((reader, writer), upstream)
            finally:
                self.active -= 1
        finally:
            await asyncio.gather(*(_close(w, abort=not clean) for w in writers))
            self._clients.discard(writer)

    async def _connect(self) -> Streams | None:
        order = self._order.next_order()
        order.sort(key=lambda b: b in self.unready)  # stable: the ready ones first
        for backend in order:
            try:
                async with asyncio.timeout(self.connect_timeout):
                    streams = await asyncio.open_connection(*backend, limit=_CHUNK)
            except (OSError, TimeoutError):
                self.failures[backend] += 1
                continue
            self.connections[backend] += 1
            return streams
        return None


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, with backpressure, then pass the EOF on."""
    while data := await reader.read(_CHUNK):
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof() and not writer.is_closing():
        writer.write_eof()


async def _pump_both(a: Streams, b: Streams) -> bool:
    """Pump ``a -> b`` and ``b -> a`` until both end (``True``) or one fails (``False``)."""
    tasks = [asyncio.ensure_future(_pump(a[0], b[1])), asyncio.ensure_future(_pump(b[0], a[1]))]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return all(t.exception() is None for t in done) and len(done) == len(tasks)


async def _close(writer: asyncio.StreamWriter, *, abort: bool) -> None:
    """Close (after flushing, unless ``abort``) and wait until the socket is closed.

    A graceful close that cannot flush within ``_CLOSE_TIMEOUT`` is aborted.
    """
    if abort:
        writer.transport.abort()
    else:
        writer.close()
    try:
        async with asyncio.timeout(_CLOSE_TIMEOUT):
            await writer.wait_closed()
        return
    except TimeoutError:
        writer.transport.abort()
    except OSError:
        return
    except asyncio.CancelledError:
        writer.transport.abort()
        raise
    with contextlib.suppress(OSError):
        await writer.wait_closed()
