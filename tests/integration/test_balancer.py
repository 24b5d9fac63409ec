"""TcpBalancer in front of real asyncio echo servers on 127.0.0.1: spreading, byte pumping,
failover, close propagation and a clean stop; and Stack putting one before its gateways."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from chat_devstack.balancer import Backend, TcpBalancer
from chat_devstack.cli import describe
from chat_devstack.ports import free_port
from chat_devstack.stack import Stack, StackConfig

pytestmark = pytest.mark.integration

HOST = "127.0.0.1"


class EchoServer:
    """Writes back whatever it reads; closes its side after the client's EOF."""

    def __init__(self) -> None:
        self.accepted = 0
        self.open: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    @property
    def backend(self) -> Backend:
        assert self._server is not None
        return (HOST, self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._echo, HOST, 0)

    async def _echo(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.open.add(writer)
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            self.open.discard(writer)
            writer.close()

    async def close_connections(self) -> None:
        """Close every open connection from the server side."""
        for writer in list(self.open):
            writer.close()
        await wait_until(lambda: not self.open)

    async def stop(self) -> None:
        """Stop listening and close every open connection."""
        if self._server is not None:
            self._server.close()
            await self.close_connections()
            await self._server.wait_closed()
            self._server = None


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - counters and sets notify nobody
            await asyncio.sleep(0.005)


async def read_to_end(reader: asyncio.StreamReader) -> bytes:
    """Everything until EOF; a reset counts as the end."""
    chunks = []
    try:
        while chunk := await reader.read(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


async def roundtrip(balancer: TcpBalancer, payload: bytes = b"ping") -> None:
    """Connect through the balancer, echo ``payload``, half-close, read to EOF."""
    reader, writer = await asyncio.open_connection(HOST, balancer.port)
    writer.write(payload)
    writer.write_eof()
    assert await read_to_end(reader) == payload
    writer.close()
    await writer.wait_closed()


@pytest.fixture
async def echoes() -> AsyncIterator[tuple[EchoServer, EchoServer]]:
    a, b = EchoServer(), EchoServer()
    await a.start()
    await b.start()
    yield a, b
    await a.stop()
    await b.stop()


@pytest.fixture
async def balancer(echoes: tuple[EchoServer, EchoServer]) -> AsyncIterator[TcpBalancer]:
    lb = TcpBalancer(backends=[e.backend for e in echoes])
    await lb.start()
    yield lb
    await lb.stop()


async def test_connections_are_spread_round_robin(
    balancer: TcpBalancer, echoes: tuple[EchoServer, EchoServer]
) -> None:
    """Four clients in a row land on the two backends two and two."""
    a, b = echoes
    assert balancer.url == f"http://{HOST}:{balancer.port}/" and balancer.port != 0
    for _ in range(4):
        await roundtrip(balancer)
    assert (a.accepted, b.accepted) == (2, 2)
    assert balancer.connections == {a.backend: 2, b.backend: 2}
    await wait_until(lambda: balancer.active == 0)


async def test_large_payload_is_echoed_both_ways(balancer: TcpBalancer) -> None:
    """4 MiB written while reading comes back intact, and EOF is passed on both ways."""
    payload = os.urandom(4 * 1024 * 1024)
    reader, writer = await asyncio.open_connection(HOST, balancer.port)

    async def send() -> None:
        for i in range(0, len(payload), 100_000):
            writer.write(payload[i : i + 100_000])
            await writer.drain()
        writer.write_eof()

    _, received = await asyncio.gather(send(), read_to_end(reader))
    assert received == payload
    writer.close()
    await writer.wait_closed()
    await wait_until(lambda: balancer.active == 0)


async def test_new_connections_avoid_a_stopped_backend(
    balancer: TcpBalancer, echoes: tuple[EchoServer, EchoServer]
) -> None:
    """With one backend gone, every new client still connects, to the live backend."""
    a, b = echoes
    dead = b.backend
    await b.stop()
    for _ in range(4):
        await roundtrip(balancer)
    assert a.accepted == 4
    assert balancer.connections[dead] == 0
    assert balancer.failures[dead] >= 1


async def test_set_backends_applies_to_new_connections(
    balancer: TcpBalancer, echoes: tuple[EchoServer, EchoServer]
) -> None:
    """After set_backends([b]) all new clients go to b."""
    a, b = echoes
    balancer.set_backends([b.backend])
    for _ in range(3):
        await roundtrip(balancer)
    assert (a.accepted, b.accepted) == (0, 3)


async def test_backend_close_closes_the_client(
    balancer: TcpBalancer, echoes: tuple[EchoServer, EchoServer]
) -> None:
    """When the backend closes its connection, the client reads EOF and the pair is gone."""
    reader, writer = await asyncio.open_connection(HOST, balancer.port)
    writer.write(b"hello")
    assert await reader.readexactly(5) == b"hello"
    for echo in echoes:
        await echo.close_connections()
    assert await read_to_end(reader) == b""
    writer.close()
    await writer.wait_closed()
    await wait_until(lambda: balancer.active == 0)


async def test_client_close_closes_the_backend(
    balancer: TcpBalancer, echoes: tuple[EchoServer, EchoServer]
) -> None:
    """When the client disconnects, the backend's connection ends too."""
    reader, writer = await asyncio.open_connection(HOST, balancer.port)
    writer.write(b"x")
    assert await reader.readexactly(1) == b"x"
    assert sum(len(e.open) for e in echoes) == 1
    writer.close()
    await writer.wait_closed()
    await wait_until(lambda: balancer.active == 0 and not any(e.open for e in echoes))


async def test_client_is_closed_when_no_backend_accepts() -> None:
    """With no backend listening, the client is closed and counted as rejected."""
    nobody = (HOST, free_port())
    lb = TcpBalancer(backends=[nobody, nobody])
    await lb.start()
    try:
        reader, writer = await asyncio.open_connection(HOST, lb.port)
        assert await read_to_end(reader) == b""
        writer.close()
        await writer.wait_closed()
        assert (lb.rejected, lb.failures[nobody]) == (1, 2)
    finally:
        await lb.stop()


async def test_stop_closes_everything_and_leaks_no_tasks(
    echoes: tuple[EchoServer, EchoServer],
) -> None:
    """stop() closes clients, backends and the listener, and leaves no task behind."""
    before = asyncio.all_tasks()
    lb = TcpBalancer(backends=[e.backend for e in echoes])
    await lb.start()
    clients = [await asyncio.open_connection(HOST, lb.port) for _ in range(4)]
    for reader, writer in clients:
        writer.write(b"up")
        assert await reader.readexactly(2) == b"up"
    assert lb.active == 4
    await lb.stop()
    assert lb.active == 0
    for reader, writer in clients:
        assert await read_to_end(reader) == b""
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    await wait_until(lambda: not any(e.open for e in echoes))
    assert asyncio.all_tasks() - before == set()
    with pytest.raises(OSError):
        await asyncio.open_connection(HOST, lb.port)


async def test_stop_ends_the_readiness_prober_when_a_probe_answers_at_that_moment() -> None:
    """stop() cancels the prober in the very loop turn its probe completes: the prober still
    ends (asyncio.wait_for on Python 3.11 would return the probe's answer instead of the
    cancellation, and stop() waited forever: two teardowns hung on CI that way)."""
    asked, answer = asyncio.Event(), asyncio.Event()

    async def probe(backend: Backend) -> bool:
        asked.set()
        await answer.wait()
        return True

    lb = TcpBalancer(backends=[(HOST, 9)], ready=probe, probe_interval=0.05)
    await lb.start()
    await asked.wait()
    answer.set()  # the probe completes on the next loop turn, the one stop() cancels in
    async with asyncio.timeout(5):
        await lb.stop()


FAKE_GATEWAY = """
import asyncio, os, signal

async def readyz(reader, writer):
    await reader.readline()
    writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: 0\\r\\nConnection: close\\r\\n\\r\\n")
    await writer.drain()
    writer.close()

async def hello(reader, writer):
    writer.write(os.environ["GATEWAY_INSTANCE_ID"].encode())
    await writer.drain()
    writer.close()

async def main():
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await asyncio.start_server(readyz, "127.0.0.1", int(os.environ["GATEWAY_HTTP_PORT"]))
    await asyncio.start_server(hello, os.environ["GATEWAY_HOST"], int(os.environ["GATEWAY_PORT"]))
    await stop.wait()

asyncio.run(main())
"""


async def test_stack_puts_a_balancer_on_the_gateway_port(tmp_path: Path) -> None:
    """With balancer=True, client_url is a balancer on gateway_port that reaches each gateway."""
    package = tmp_path / "fakes" / "chat_gateway"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(FAKE_GATEWAY)
    port = free_port()
    config = StackConfig(
        data_dir=tmp_path / "data",
        gateways=2,
        sessions=0,
        histories=0,
        nats_url="nats://127.0.0.1:1",
        redis_url="redis://127.0.0.1:1/0",
        postgres_dsn="postgresql://127.0.0.1:1/none",
        gateway_port=port,
        balancer=True,
        extra_env={"PYTHONPATH": str(tmp_path / "fakes")},
    )
    async with Stack(config) as stack:
        assert stack.balancer is not None
        assert stack.client_url == stack.balancer.url == f"http://{HOST}:{port}/"
        assert port not in [g.port for g in stack.of_kind("gateway")]
        assert "connect to" in describe(stack).splitlines()[1]
        greetings = []
        for _ in range(2):
            reader, writer = await asyncio.open_connection(HOST, port)
            greetings.append(await read_to_end(reader))
            writer.close()
            await writer.wait_closed()
        assert sorted(greetings) == [b"gateway-1", b"gateway-2"]
    with pytest.raises(OSError):
        await asyncio.open_connection(HOST, port)


async def test_new_clients_go_to_the_ready_backends(echoes: tuple[EchoServer, EchoServer]) -> None:
    """With a readiness probe, a backend that says it is not ready gets no new client while
    another is ready; ready again, it gets its turn again; with none ready, the unready
    ones still serve rather than nobody."""
    a, b = echoes
    ready = {a.backend: True, b.backend: False}

    async def probe(backend: Backend) -> bool:
        return ready[backend]

    lb = TcpBalancer(backends=[a.backend, b.backend], ready=probe, probe_interval=0.02)
    await lb.start()
    try:
        await wait_until(lambda: lb.unready == {b.backend})
        for _ in range(4):
            await roundtrip(lb)
        assert (a.accepted, b.accepted) == (4, 0)
        ready[b.backend] = True
        await wait_until(lambda: not lb.unready)
        for _ in range(4):
            await roundtrip(lb)
        assert (a.accepted, b.accepted) == (6, 2)
        ready[a.backend] = ready[b.backend] = False
        await wait_until(lambda: lb.unready == {a.backend, b.backend})
        await roundtrip(lb)
        assert a.accepted + b.accepted == 9
    finally:
        await lb.stop()
