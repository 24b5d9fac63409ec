"""Readiness probes speaking just enough of each wire protocol over a raw socket.

The encoders and parsers are pure functions (unit-tested with byte fixtures); the ``async``
probes only move bytes. Probes raise ``OSError`` when nothing listens yet; callers such as
:meth:`ManagedProcess.wait_ready` treat that as "not ready".
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

__all__ = [
    "encode_resp_command",
    "http_get_status",
    "nats_info",
    "parse_http_status",
    "parse_redis_info",
    "postgres_accepts",
    "postgres_startup_message",
    "redis_command",
    "redis_info",
    "redis_ping",
]

_PG_PROTOCOL_3 = 196608
_PG_TERMINATE = b"X\x00\x00\x00\x04"


@asynccontextmanager
async def _connect(
    host: str, port: int
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with suppress(OSError):
            await writer.wait_closed()


def encode_resp_command(*args: str | bytes) -> bytes:
    """A Redis command as a RESP array of bulk strings."""
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def postgres_startup_message(user: str, database: str) -> bytes:
    """A protocol-3 StartupMessage for ``user`` on ``database``."""
    body = struct.pack("!I", _PG_PROTOCOL_3)
    body += b"user\x00" + user.encode() + b"\x00database\x00" + database.encode() + b"\x00\x00"
    return struct.pack("!I", len(body) + 4) + body


def parse_http_status(status_line: bytes) -> int:
    """The status code of an ``HTTP/1.x NNN Reason`` line; ``ValueError`` if malformed."""
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        raise ValueError(f"not an HTTP status line: {status_line!r}")
    return int(parts[1])


async def nats_info(host: str, port: int) -> bool:
    """NATS greets every client with an ``INFO {...}`` line once it accepts connections."""
    async with _connect(host, port) as (reader, _):
        return (await reader.readline()).startswith(b"INFO ")


async def redis_command(host: str, port: int, *args: str | bytes) -> bytes:
    """Send one command and return the first line of the reply (e.g. ``b"+OK"``)."""
    async with _connect(host, port) as (reader, writer):
        writer.write(encode_resp_command(*args))
        await writer.drain()
        return (await reader.readline()).rstrip(b"\r\n")


def parse_redis_info(text: bytes) -> dict[str, str]:
    """The ``key:value`` lines of an ``INFO`` reply (section headers and blanks skipped)."""
    fields: dict[str, str] = {}
    for line in text.decode(errors="replace").splitlines():
        key, sep, value = line.partition(":")
        if sep and not line.startswith("#"):
            fields[key] = value
    return fields


async def redis_info(host: str, port: int, section: str = "server") -> dict[str, str]:
    """``INFO section`` as a dict (``process_id``, ``tcp_port``, ``loading``...)."""
    async with _connect(host, port) as (reader, writer):
        writer.write(encode_resp_command("INFO", section))
        await writer.drain()
        header = await reader.readline()
        if not header.startswith(b"$"):
            raise ValueError(f"unexpected INFO reply: {header!r}")
        body = await reader.readexactly(int(header[1:]) + 2)
        return parse_redis_info(body)


async def redis_ping(host: str, port: int) -> bool:
    """``PING`` answers ``+PONG`` once the dataset is loaded (``-LOADING`` before)."""
    return await redis_command(host, port, "PING") == b"+PONG"


async def postgres_accepts(
    host: str, port: int, *, user: str = "postgres", database: str = "postgres"
) -> bool:
    """Whether Postgres authenticates a session (it refuses while starting or recovering)."""
    async with _connect(host, port) as (reader, writer):
        writer.write(postgres_startup_message(user, database))
        await writer.drain()
        kind = await reader.readexactly(1)
        (length,) = struct.unpack("!I", await reader.readexactly(4))
        payload = await reader.readexactly(length - 4)
        ok = kind == b"R" and payload[:4] == b"\x00\x00\x00\x00"  # AuthenticationOk
        if ok:
            writer.write(_PG_TERMINATE)
            await writer.drain()
        return ok


async def http_get_status(host: str, port: int, path: str) -> int:
    """``GET path`` over HTTP/1.1 and return the status code."""
    async with _connect(host, port) as (reader, writer):
        request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
        writer.write(request.encode())
        await writer.drain()
        return parse_http_status(await reader.readline())
