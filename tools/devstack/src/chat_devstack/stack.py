"""The whole local system: NATS, Redis, Postgres, then history, session and gateway services.

Start order: servers (concurrently), then sessions and histories, then gateways, each
group waited for until ready, then (if configured) a TCP balancer in front of the gateways.
Stop order is the reverse: balancer, gateways, then sessions and histories, then Postgres,
Redis and NATS. A server is skipped when the config gives the URL of an external one.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

from .balancer import TcpBalancer
from .errors import DevstackError
from .ports import free_port, next_free_ports, port_is_free
from .process import ManagedProcess
from .servers import NatsServer, PostgresServer, RedisServer, Server
from .services import ServiceKind, ServiceProcess, service_env

__all__ = ["Stack", "StackConfig"]

_S = TypeVar("_S", bound=Server)


@dataclass
class StackConfig:
    """What to run. ``*_url``/``postgres_dsn`` set means "use that server, start none".

    ``gateway_port`` is the first gateway's public port (``0``: any free port); further
    gateways take the next free ports above it. Server ports of ``0`` are picked freely.
    ``balancer=True`` (with gateways) puts a :class:`TcpBalancer` on ``gateway_port`` and
    moves the gateways to the next free ports above it.
    """

    data_dir: Path
    gateways: int = 1
    sessions: int = 1
    histories: int = 1
    nats_url: str | None = None
    redis_url: str | None = None
    postgres_dsn: str | None = None
    gateway_port: int = 8080
    host: str = "127.0.0.1"
    extra_env: dict[str, str] = field(default_factory=dict)
    nats_port: int = 0
    redis_port: int = 0
    postgres_port: int = 0
    start_timeout: float = 60.0
    stop_timeout: float = 15.0
    balancer: bool = False


async def _all(aws: Iterable[Awaitable[object]]) -> None:
    """Await concurrently; on the first failure cancel the rest, then re-raise it."""
    tasks = [asyncio.ensure_future(aw) for aw in aws]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


class Stack:
    """Runs a :class:`StackConfig`; use ``async with Stack(config) as stack:``."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.data_dir = Path(config.data_dir).absolute()
        self.log_dir = self.data_dir / "logs"
        """Where the services' logs go (servers log into their own data dirs)."""
        self.nats: NatsServer | None = None
        self.redis: RedisServer | None = None
        self.postgres: PostgresServer | None = None
        if config.nats_url is None:
            self.nats = NatsServer(self.data_dir, port=config.nats_port, host=config.host)
        if config.redis_url is None:
            self.redis = RedisServer(self.data_dir, port=config.redis_port, host=config.host)
        if config.postgres_dsn is None:
            self.postgres = PostgresServer(
                self.data_dir, port=config.postgres_port, host=config.host
            )
        self.services: list[ServiceProcess] = []
        self.balancer: TcpBalancer | None = None
        """The balancer in front of the gateways, when ``config.balancer`` is set."""
        self.startup_seconds: dict[str, float] = {}
        """Seconds from spawn to ready, per server and per group of services."""

    @property
    def servers(self) -> list[Server]:
        """The servers we start ourselves, in start order."""
        return [s for s in (self.nats, self.redis, self.postgres) if s is not None]

    @property
    def nats_url(self) -> str:
        """The external NATS URL, or ours."""
        return self.config.nats_url or self._ours(self.nats).url

    @property
    def redis_url(self) -> str:
        """The external Redis URL, or ours."""
        return self.config.redis_url or self._ours(self.redis).url

    @property
    def postgres_dsn(self) -> str:
        """The external Postgres DSN, or ours."""
        return self.config.postgres_dsn or self._ours(self.postgres).dsn

    @staticmethod
    def _ours(server: _S | None) -> _S:
        if server is None:
            raise DevstackError("server is external")
        return server

    def of_kind(self, kind: ServiceKind) -> list[ServiceProcess]:
        """The service processes of one kind, in index order."""
        return [s for s in self.services if s.kind == kind]

    @property
    def gateway_urls(self) -> list[str]:
        """``http://HOST:PORT/`` of each gateway (Socket.IO at ``/socket.io/``, WS at ``/ws``)."""
        return [g.public_url for g in self.of_kind("gateway") if g.public_url is not None]

    @property
    def client_url(self) -> str:
        """Where clients connect: the balancer's URL if there is one, else the first gateway's."""
        if self.balancer is not None:
            return self.balancer.url
        urls = self.gateway_urls
        if not urls:
            raise DevstackError("no gateways")
        return urls[0]

    @property
    def processes(self) -> list[ManagedProcess]:
        """Every child process we own: servers' and services'."""
        servers = [s.process for s in self.servers if s.process is not None]
        return [*servers, *self.services]

    async def start(self) -> None:
        """Start servers, then services; on any failure stop what started and re-raise."""
        try:
            await self.start_servers()
            await self.start_services()
        except BaseException:
            await self.stop()
            raise

    async def start_servers(self) -> None:
        """Start our NATS, Redis and Postgres concurrently and wait until they are ready."""
        await _all(server.start() for server in self.servers)
        for server in self.servers:
            self.startup_seconds[server.name] = server.startup_seconds or 0.0

    async def start_services(self) -> None:
        """Start histories and sessions, then gateways, each group waited for until ready."""
        self._build_services()
        loop = asyncio.get_running_loop()
        for group in (("history", "session"), ("gateway",)):
            members = [s for s in self.services if s.kind in group]
            if not members:
                continue
            began = loop.time()
            await _all(self._start_service(s) for s in members)
            self.startup_seconds["+".join(group)] = loop.time() - began
        await self._start_balancer()

    async def _start_balancer(self) -> None:
        gateways = self.of_kind("gateway")
        if not self.config.balancer or not gateways:
            return
        backends = [(g.host, g.port) for g in gateways if g.port is not None]
        self.balancer = TcpBalancer(
            host=self.config.host, port=self.config.gateway_port, backends=backends
        )
        try:
            await self.balancer.start()
        except OSError as exc:
            port = self.config.gateway_port
            raise DevstackError(f"balancer cannot listen on port {port}: {exc}") from exc

    async def _start_service(self, service: ServiceProcess) -> None:
        await service.start()
        await service.wait_ready(timeout=self.config.start_timeout)

    def _gateway_ports(self) -> list[int]:
        cfg = self.config
        if cfg.gateways == 0:
            return []
        if cfg.gateway_port == 0:
            return next_free_ports(0, cfg.gateways, cfg.host)
        if not port_is_free(cfg.gateway_port, cfg.host):
            raise DevstackError(f"gateway port {cfg.gateway_port} is in use; pick another")
        if cfg.balancer:  # the balancer takes gateway_port
            return next_free_ports(cfg.gateway_port + 1, cfg.gateways, cfg.host)
        rest = next_free_ports(cfg.gateway_port + 1, cfg.gateways - 1, cfg.host)
        return [cfg.gateway_port, *rest]

    def _build_services(self) -> None:
        cfg = self.config
        gateway_ports = self._gateway_ports()
        counts: dict[ServiceKind, int] = {
            "history": cfg.histories,
            "session": cfg.sessions,
            "gateway": cfg.gateways,
        }
        used = set(gateway_ports)
        self.services = []
        for kind, count in counts.items():
            for index in range(1, count + 1):
                http_port = free_port()
                while http_port in used:
                    http_port = free_port()
                used.add(http_port)
                port = gateway_ports[index - 1] if kind == "gateway" else None
                env = service_env(
                    kind,
                    instance_id=f"{kind}-{index}",
                    http_port=http_port,
                    nats_url=self.nats_url,
                    redis_url=self.redis_url if kind == "session" else None,
                    postgres_dsn=self.postgres_dsn if kind == "history" else None,
                    host=cfg.host,
                    port=port,
                    extra_env=cfg.extra_env,
                )
                service = ServiceProcess(
                    kind,
                    index,
                    env=os.environ | env,
                    http_port=http_port,
                    port=port,
                    host=cfg.host,
                    log_path=self.log_dir / f"{kind}-{index}.log",
                )
                self.services.append(service)

    async def stop_services(self) -> None:
        """Stop the balancer, SIGTERM gateways, then sessions and histories.

        Processes still running after ``stop_timeout`` get SIGKILL.
        """
        timeout = self.config.stop_timeout
        if self.balancer is not None:
            await self.balancer.stop()
        await asyncio.gather(*(g.terminate(timeout) for g in self.of_kind("gateway")))
        others = [s for s in self.services if s.kind != "gateway"]
        await asyncio.gather(*(s.terminate(timeout) for s in others))

    async def stop_servers(self) -> None:
        """Stop Postgres (fast), Redis, then NATS, one after the other."""
        for server in reversed(self.servers):
            await server.stop(timeout=self.config.stop_timeout)

    async def stop(self) -> None:
        """Services first, servers last; safe to call on a partly started stack."""
        try:
            await self.stop_services()
        finally:
            await self.stop_servers()

    async def kill(self) -> None:
        """SIGKILL everything at once (the second Ctrl-C)."""
        await asyncio.gather(*(p.kill() for p in self.processes), return_exceptions=True)

    async def wait_for_exit(self) -> ManagedProcess:
        """Wait until any of our processes exits, and return it."""
        procs = [p for p in self.processes if p.running]
        if not procs:
            raise DevstackError("nothing is running")
        waits = {asyncio.ensure_future(p.wait()): p for p in procs}
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
        return waits[next(iter(done))]

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
