"""FaultProxy in front of a local asyncio echo server: each mode, switched at run time,
does to a real TCP connection exactly what it promises, and stop() leaves nothing behind."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from tests.support.faultproxy import (
    BLACKHOLE,
    PASS,
    RESET,
    TASK_PREFIX,
    FaultProxy,
    latency,
    slow_close,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

HOST = "127.0.0.1"
SILENCE_S = 0.5
"""How long a read must stay unanswered to count as "no answer" (proving an absence)."""

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class EchoServer:
    """Writes back what it reads; closes its side after the client's EOF or on ``bye``."""

    def __init__(self) -> None:
        self.accepted = 0
        self.open: set[asyncio.StreamWriter] = set()
        self.ended = asyncio.Event()
        """Set whenever a connection ends on the server's side (EOF or reset)."""
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"tcp://{HOST}:{self._server.sockets[0].getsockname()[1]}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._echo, HOST, 0)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self.open):
            writer.transport.abort()
        await self._server.wait_closed()

    async def _echo(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.open.add(writer)
        try:
            while data := await reader.read(65536):
                if data == b"bye":
                    break
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            self.open.discard(writer)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            self.ended.set()


@pytest.fixture
async def echo() -> AsyncIterator[EchoServer]:
    server = EchoServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def proxy(echo: EchoServer) -> AsyncIterator[FaultProxy]:
    running = FaultProxy(echo.url)
    await running.start()
    yield running
    await running.stop()


async def connect(proxy: FaultProxy) -> Conn:
    return await asyncio.open_connection(HOST, proxy.port)


async def round_trip(conn: Conn, data: bytes, timeout: float = 5.0) -> bytes:
    reader, writer = conn
    writer.write(data)
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(len(data)), timeout)


async def assert_silent(conn: Conn) -> None:
    """Nothing arrives, not even an EOF or a reset, and our side stays open."""
    reader, writer = conn
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(1), SILENCE_S)
    assert not reader.at_eof()
    assert not writer.is_closing()


async def close(conn: Conn) -> None:
    conn[1].transport.abort()


async def test_pass_pumps_bytes_and_passes_the_eof_on(proxy: FaultProxy, echo: EchoServer) -> None:
    """In pass mode bytes go both ways unchanged and a half-close reaches the other side."""
    conn = await connect(proxy)
    assert await round_trip(conn, b"hello") == b"hello"
    assert await round_trip(conn, b"x" * 300_000) == b"x" * 300_000
    conn[1].write_eof()
    assert await asyncio.wait_for(conn[0].read(), 5) == b""
    await close(conn)
    assert echo.accepted == 1


async def test_latency_delays_each_direction_and_keeps_order(proxy: FaultProxy) -> None:
    """With latency L a round trip takes at least 2L (L each way) and chunks stay in order."""
    conn = await connect(proxy)
    await round_trip(conn, b"warm")
    proxy.set_mode(latency(0.2))
    began = time.monotonic()
    assert await round_trip(conn, b"ping") == b"ping"
    assert time.monotonic() - began >= 0.4
    reader, writer = conn
    for i in range(20):
        writer.write(b"%02d" % i)
        await writer.drain()
    got = await asyncio.wait_for(reader.readexactly(40), 5)
    assert got == b"".join(b"%02d" % i for i in range(20))
    await close(conn)


async def test_blackhole_freezes_an_open_connection_silently(
    proxy: FaultProxy, echo: EchoServer
) -> None:
    """A blackholed link answers nothing and closes nothing; back in pass, what was held
    flows on, as after a healed partition."""
    conn = await connect(proxy)
    await round_trip(conn, b"before")
    proxy.set_mode(BLACKHOLE)
    conn[1].write(b"during")
    await conn[1].drain()
    await assert_silent(conn)
    proxy.set_mode(PASS)
    assert await asyncio.wait_for(conn[0].readexactly(6), 5) == b"during"
    assert await round_trip(conn, b"after") == b"after"
    await close(conn)


async def test_blackhole_accepts_new_connections_and_freezes_them(
    proxy: FaultProxy, echo: EchoServer
) -> None:
    """A client connecting to a blackholed link is accepted but never reaches the server;
    once the link is back it does, and new connections work as before."""
    proxy.set_mode(BLACKHOLE)
    frozen = await connect(proxy)
    frozen[1].write(b"hello?")
    await assert_silent(frozen)
    assert echo.accepted == 0
    proxy.set_mode(PASS)
    assert await asyncio.wait_for(frozen[0].readexactly(6), 5) == b"hello?"
    fresh = await connect(proxy)
    assert await round_trip(fresh, b"fresh") == b"fresh"
    assert echo.accepted == 2
    await close(frozen)
    await close(fresh)


async def test_blackhole_hides_the_client_closing(proxy: FaultProxy, echo: EchoServer) -> None:
    """A client that gives up on a blackholed link is not seen to go by the server until
    the link is back: the server's side stays open meanwhile."""
    conn = await connect(proxy)
    await round_trip(conn, b"x")
    proxy.set_mode(BLACKHOLE)
    conn[1].close()
    await conn[1].wait_closed()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(echo.ended.wait(), SILENCE_S)
    assert len(echo.open) == 1
    proxy.set_mode(PASS)
    await asyncio.wait_for(echo.ended.wait(), 5)
    assert not echo.open


async def test_blackhole_pushes_back_on_a_writer_once_its_buffer_is_full(
    echo: EchoServer,
) -> None:
    """A peer writing into a blackholed link is held back (its drain blocks) once the
    proxy's bounded buffer and the sockets' buffers are full: memory stays bounded."""
    proxy = FaultProxy(echo.url, buffer_bytes=64 * 1024)
    await proxy.start()
    try:
        conn = await connect(proxy)
        await round_trip(conn, b"x")
        proxy.set_mode(BLACKHOLE)
        chunk = b"y" * (1024 * 1024)
        written = 0
        with pytest.raises(TimeoutError):
            for _ in range(256):  # far more than any socket buffer holds
                conn[1].write(chunk)
                written += len(chunk)
                await asyncio.wait_for(conn[1].drain(), SILENCE_S)
        assert written < 64 * 1024 * 1024
        await close(conn)
    finally:
        await proxy.stop()


async def test_reset_aborts_open_connections_with_rst(proxy: FaultProxy) -> None:
    """Switching to reset makes the client see a connection reset, not a clean EOF."""
    conn = await connect(proxy)
    await round_trip(conn, b"x")
    proxy.set_mode(RESET)
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(conn[0].read(1), 5)
    assert proxy.resets == 1
    await close(conn)


async def test_reset_resets_new_connections_until_back_to_pass(
    proxy: FaultProxy, echo: EchoServer
) -> None:
    """While in reset every new client is reset at once; back in pass, new clients work."""
    proxy.set_mode(RESET)
    conn = await connect(proxy)
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(round_trip(conn, b"x"), 5)
    await close(conn)
    assert echo.accepted == 0
    proxy.set_mode(PASS)
    fresh = await connect(proxy)
    assert await round_trip(fresh, b"again") == b"again"
    await close(fresh)


async def test_slow_close_holds_the_servers_fin(proxy: FaultProxy, echo: EchoServer) -> None:
    """When the server closes, the client sees an open, silent connection for the hold
    time, and only then the EOF."""
    conn = await connect(proxy)
    await round_trip(conn, b"x")
    proxy.set_mode(slow_close(1.0))
    began = time.monotonic()
    conn[1].write(b"bye")  # the echo server closes its side
    await asyncio.wait_for(echo.ended.wait(), 5)
    await assert_silent(conn)
    assert await asyncio.wait_for(conn[0].read(), 5) == b""
    assert time.monotonic() - began >= 1.0
    await close(conn)


async def test_stop_leaves_no_task_and_no_connection(echo: EchoServer) -> None:
    """stop() aborts open (even frozen) connections and every proxy task is gone."""
    proxy = FaultProxy(echo.url)
    await proxy.start()
    live = await connect(proxy)
    await round_trip(live, b"x")
    proxy.set_mode(BLACKHOLE)
    frozen = await connect(proxy)
    await asyncio.wait_for(proxy.wait_until(lambda p: p.accepted == 2), 5)
    await proxy.stop()
    assert proxy.active == 0
    assert [t for t in asyncio.all_tasks() if t.get_name().startswith(TASK_PREFIX)] == []
    for conn in (live, frozen):
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(conn[0].read(1), 5)
        await close(conn)


async def test_freeze_open_stalls_open_connections_for_good(
    proxy: FaultProxy, echo: EchoServer
) -> None:
    """freeze_open silences the connections open at that moment even after the mode is
    set again, while new connections work."""
    old = await connect(proxy)
    await round_trip(old, b"x")
    assert proxy.freeze_open() == 1
    proxy.set_mode(PASS)
    old[1].write(b"anyone?")
    await assert_silent(old)
    fresh = await connect(proxy)
    assert await round_trip(fresh, b"fresh") == b"fresh"
    await assert_silent(old)
    await close(old)
    await close(fresh)
