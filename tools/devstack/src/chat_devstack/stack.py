"""The whole local system: NATS, Redis, Postgres, then history, session and gateway services.

Start order: servers (concurrently), then sessions and histories, then gateways, each
group waited for until ready, then (if configured) a TCP balancer in front of the gateways.
Stop order is the reverse: balancer, gateways, then sessions and histories, then Postgres,
Redis and NATS. A server is skipped when the config gives the URL of an external one.

Our NATS runs with authorization (:class:`NatsServer`): each service gets the seed file of
its own identity. For an external NATS, ``StackConfig.nats_seed_files`` gives them (tests
pass their own server's); without, services take their credentials from the environment.

:meth:`Stack.supervise` (what ``chat-stack run`` adds; test fixtures do not) restarts any of
our processes that dies, on the same ports and data, with the backoff of
:mod:`chat_devstack.restart`.
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

from .balancer import TcpBalancer
from .errors import DevstackError, StartupError
from .ha import HaServers
from .hosts import Host
from .ports import free_port, next_free_ports, port_is_free
from .process import ManagedProcess
from .restart import Restart, RestartPolicy, RestartTracker
from .servers import NatsServer, PostgresServer, RedisServer, Server
from .services import ServiceKind, ServiceProcess, service_env

__all__ = ["Stack", "StackConfig"]

_S = TypeVar("_S", bound=Server)
HOST_GATEWAY_PORT = 8080
HOST_HTTP_PORT = 9090
"""A service's ports on a test host of its own."""
_LOG_TAIL_LINES = 20

Report = Callable[[str], None]
"""Where :meth:`Stack.supervise` says what it does: one message (maybe several lines) a call."""


@dataclass
class StackConfig:
    """What to run. ``*_url``/``postgres_dsn`` set means "use that server, start none".

    ``gateway_port`` is the first gateway's public port (``0``: any free port); further
    gateways take the next free ports above it. Server ports of ``0`` are picked freely.
    ``balancer=True`` (with gateways) puts a :class:`TcpBalancer` on ``gateway_port`` and
    moves the gateways to the next free ports above it. ``shared_port=True`` instead has
    every gateway listen on ``gateway_port`` itself (``SO_REUSEPORT``: the kernel spreads
    new connections over them, one gateway process per core and no balancer hop). ``nats_seed_files`` (identity name →
    NKey seed file) are the credentials for an external ``nats_url``.
    """

    data_dir: Path
    gateways: int = 1
    sessions: int = 1
    histories: int = 1
    nats_url: str | None = None
    nats_seed_files: dict[str, Path] = field(default_factory=dict)
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
    shared_port: bool = False
    ha: bool = False
    """Run the production topology (:class:`HaServers`) instead of one server of each."""
    hosts: Mapping[str, Host] | None = None
    """With ``ha``: every server and service on a test host of its own (:mod:`chat_devstack.
    hosts`), by label: the servers' (:data:`~chat_devstack.ha.SERVER_LABELS`) and
    ``<kind>-<n>`` for the services. Gateways listen on their host's port 8080 and every
    service's ops HTTP port is 9090 there; clients connect to a gateway's address."""

    def __post_init__(self) -> None:
        if self.balancer and self.shared_port:
            raise ValueError("a balancer and a shared port are two ways to the same end: pick one")
        if self.hosts is not None and not self.ha:
            raise ValueError("test hosts are for the production topology (ha=True)")


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


def _exit_message(proc: ManagedProcess, why: str, restart: Restart, policy: RestartPolicy) -> str:
    """What the supervisor says when ``proc`` died (or failed to come back)."""
    lines = [
        f"{proc.name} {why} after {restart.uptime_s:.1f}s up; restarting it in"
        f" {restart.delay_s:.2f}s (attempt {restart.streak} in a row, {restart.total} in total)"
    ]
    if restart.crash_looping:
        lines.append(
            f"!!! {proc.name} is CRASH LOOPING: {restart.streak} failures in a row without"
            f" staying up {policy.stable_s:.0f}s. It is retried every {policy.cap_s:.0f}s at"
            " most and never given up on; fix the cause or press Ctrl-C to stop everything."
        )
    lines.append(f"--- last lines of {proc.log_path} ---")
    lines.append(proc.log_tail(_LOG_TAIL_LINES))
    return "\n".join(lines)


async def _keep_up(
    proc: ManagedProcess,
    start: Callable[[], Awaitable[None]],
    tracker: RestartTracker,
    report: Report,
    draw: Callable[[], float],
) -> None:
    """Each time ``proc`` exits, wait the tracker's delay and ``start`` it again; forever.

    A restart that fails counts as one more crash. When cancelled while a restart is pending
    or in progress, whatever that restart spawned is killed before the cancellation goes on.
    """
    loop = asyncio.get_running_loop()
    tracker.ready(loop.time())
    why: str | None = None
    while True:
        code = await proc.wait()
        restart = tracker.exited(loop.time(), draw=draw())
        report(_exit_message(proc, why or f"exited with code {code}", restart, tracker.policy))
        try:
            await asyncio.sleep(restart.delay_s)
            await proc.kill()  # whatever is left of its process group
            began = loop.time()
            await start()
        except asyncio.CancelledError:
            await proc.kill()
            report(f"{proc.name}: restart abandoned, the stack is stopping")
            raise
        except Exception as exc:  # any failure to come back is one more crash
            await proc.kill()
            detail = exc.reason if isinstance(exc, StartupError) else f"{exc!r}"
            why = f"failed to restart ({detail})"
            continue
        tracker.ready(loop.time())
        why = None
        report(
            f"{proc.name} is back (pid {proc.pid}, ready {loop.time() - began:.2f}s after spawn)"
        )


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
        self.ha: HaServers | None = None
        """The clustered servers, with ``config.ha``."""
        if config.ha:
            if config.nats_url or config.redis_url or config.postgres_dsn:
                raise DevstackError("--ha starts its own servers: unset the external URLs")
            self.ha = HaServers(self.data_dir, host=config.host, hosts=config.hosts)
        elif config.nats_url is None:
            self.nats = NatsServer(self.data_dir, port=config.nats_port, host=config.host)
        if config.redis_url is None and self.ha is None:
            self.redis = RedisServer(self.data_dir, port=config.redis_port, host=config.host)
        if config.postgres_dsn is None and self.ha is None:
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
        if self.ha is not None:
            return self.ha.servers
        return [s for s in (self.nats, self.redis, self.postgres) if s is not None]

    @property
    def nats_url(self) -> str:
        """The external NATS URL, or ours (every node's, comma-separated, with ``ha``)."""
        if self.ha is not None:
            return self.ha.nats.url
        return self.config.nats_url or self._ours(self.nats).url

    @property
    def nats_seed_files(self) -> dict[str, Path]:
        """Identity name → NKey seed file: our NATS's, or the config's for an external one."""
        if self.ha is not None:
            return self.ha.nats.seed_files
        return self.nats.seed_files if self.nats is not None else dict(self.config.nats_seed_files)

    @property
    def redis_url(self) -> str:
        """The external Redis URL, or ours."""
        if self.ha is not None:
            return self.ha.redis.url
        return self.config.redis_url or self._ours(self.redis).url

    @property
    def postgres_dsn(self) -> str:
        """The external Postgres DSN, or ours."""
        if self.ha is not None:
            return self.ha.postgres.dsn
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
        if self.ha is not None:
            await self.ha.start()
        else:
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
        backends = {(g.host, g.port): g for g in gateways if g.port is not None}

        async def ready(backend: tuple[str, int]) -> bool:
            return await backends[backend].is_ready()

        self.balancer = TcpBalancer(
            host=self.config.host,
            port=self.config.gateway_port,
            backends=list(backends),
            ready=ready,
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
        if cfg.hosts is not None:
            return [HOST_GATEWAY_PORT] * cfg.gateways
        if cfg.gateway_port == 0:
            if cfg.shared_port:
                return [free_port(cfg.host)] * cfg.gateways
            return next_free_ports(0, cfg.gateways, cfg.host)
        if not port_is_free(cfg.gateway_port, cfg.host):
            raise DevstackError(f"gateway port {cfg.gateway_port} is in use; pick another")
        if cfg.shared_port:
            return [cfg.gateway_port] * cfg.gateways
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
                on = cfg.hosts[f"{kind}-{index}"] if cfg.hosts is not None else None
                http_port = HOST_HTTP_PORT if on is not None else free_port()
                while on is None and http_port in used:
                    http_port = free_port()
                used.add(http_port)
                port = gateway_ports[index - 1] if kind == "gateway" else None
                host = on.address if on is not None else cfg.host
                placed = {f"{kind.upper()}_HTTP_HOST": host} if on is not None else {}
                env = service_env(
                    kind,
                    instance_id=f"{kind}-{index}",
                    http_port=http_port,
                    nats_url=self.nats_url,
                    redis_url=self.redis_url if kind == "session" else None,
                    postgres_dsn=self.postgres_dsn if kind == "history" else None,
                    host=host,
                    port=port,
                    nats_seed_file=self.nats_seed_files.get(kind),
                    extra_env=cfg.extra_env
                    | self._shared_port_env(kind)
                    | self._ha_env(kind)
                    | placed,
                )
                service = ServiceProcess(
                    kind,
                    index,
                    env=os.environ | env,
                    http_port=http_port,
                    port=port,
                    host=host,
                    netns=on.netns if on is not None else None,
                    log_path=self.log_dir / f"{kind}-{index}.log",
                )
                self.services.append(service)

    def _ha_env(self, kind: ServiceKind) -> dict[str, str]:
        if self.ha is None or kind != "history":
            return {}
        return {"HISTORY_POSTGRES_READ_DSN": self.ha.postgres.read_dsn}

    def _shared_port_env(self, kind: ServiceKind) -> dict[str, str]:
        return (
            {"GATEWAY_REUSE_PORT": "true"} if kind == "gateway" and self.config.shared_port else {}
        )

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
        if self.ha is not None:
            await self.ha.stop(timeout=self.config.stop_timeout)
            return
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

    async def supervise(
        self,
        policy: RestartPolicy | None = None,
        *,
        report: Report,
        draw: Callable[[], float] = random.random,
    ) -> None:
        """Restart any of our processes that exits, with ``policy``'s backoff, until cancelled.

        Call it once :meth:`start` has returned. Servers come back on the same port with the
        same data, services with the same environment and ports (so a gateway is back behind
        the balancer), each waited for until ready as at the start. ``report`` is told of
        every exit (exit code, attempt, delay, log tail) and every recovery. ``draw`` gives
        the jitter's random numbers. To stop, cancel it and await it before :meth:`stop`:
        a pending restart is dropped, one in progress is killed, and nothing starts later.

        Only ``chat-stack run`` uses this: tests that kill a process on purpose restart it
        themselves (or not), so :class:`Stack` does not restart anything on its own.
        """
        policy = policy or RestartPolicy()
        parts: list[tuple[ManagedProcess, Callable[[], Awaitable[None]]]] = [
            (server.process, self._restart_for(server))
            for server in self.servers
            if server.process is not None
        ]
        for service in self.services:
            parts.append((service, functools.partial(self._start_service, service)))
        if not parts:
            raise DevstackError("nothing to supervise: start the stack first")
        async with asyncio.TaskGroup() as group:
            for proc, start in parts:
                tracker = RestartTracker(policy)
                group.create_task(_keep_up(proc, start, tracker, report, draw), name=proc.name)

    def _restart_for(self, server: Server) -> Callable[[], Awaitable[None]]:
        return server.start if self.ha is None else self.ha.restart_for(server)

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
