"""What NATS, Redis and Postgres servers have in common: a port, a home dir, a lifecycle.

A server given ``port=0`` picks a free port at its first start and keeps it afterwards, so
``restart()`` comes back on the same port with the same data. If another process grabs
the picked port first, the start is retried on a new one. Readiness probes also check the
identity of the server that answers, so a foreign server on a reused port is never taken
for ours.
"""

from __future__ import annotations

import asyncio
import signal
from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

from .errors import DevstackError, ProcessExitedError
from .hosts import Host
from .ports import free_port
from .process import ManagedProcess, RunAs

__all__ = ["Server"]

_PORT_ATTEMPTS = 3


class Server(ABC):
    """A server process whose files (data and ``<name>.log``) live in ``data_dir/<dir_name>``."""

    name: ClassVar[str]
    dir_name: ClassVar[str]
    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM
    death_signal: ClassVar[signal.Signals] = signal.SIGTERM
    default_port: ClassVar[int] = 0
    """Its port on a test host of its own (:meth:`place`), where every port is free."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        start_timeout: float = 60.0,
        netns: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.home = self.data_dir / self.dir_name
        self.host = host
        self.netns = netns
        """The test host it runs on (:mod:`chat_devstack.hosts`); ``host`` is its address."""
        self.port = port
        self.start_timeout = start_timeout
        self.process: ManagedProcess | None = None
        self.label = self.name
        """What its process is called in the supervisor's messages (``nats-2`` in a cluster)."""
        self.startup_seconds: float | None = None
        """Wall time of the last successful :meth:`start` (spawn to ready, plus setup)."""
        self._port_chosen = port != 0

    @property
    def log_path(self) -> Path:
        """Where the server's stdout and stderr go."""
        return self.home / f"{self.name}.log"

    @property
    @abstractmethod
    def url(self) -> str:
        """How clients connect."""

    @property
    def running(self) -> bool:
        """Whether the server process is alive (it may be paused)."""
        return self.process is not None and self.process.running

    @abstractmethod
    def _argv(self) -> list[str]:
        """The command line, built once ``self.port`` is known."""

    @abstractmethod
    async def _ready(self) -> bool:
        """``True`` once *our* process serves clients on ``self.port``."""

    def place(self, host: Host) -> None:
        """Run on ``host`` (a network namespace of :mod:`chat_devstack.hosts`), at its
        address and this kind's usual port. Call it before the first start."""
        if self.process is not None:
            raise DevstackError(f"{self.label} has started already: it cannot move")
        self.host, self.netns = host.address, host.netns
        if not self._port_chosen:
            self.port, self._port_chosen = self.default_port, True

    def _free_port(self) -> int:
        """A port to try when none was chosen (servers needing more than one override it)."""
        return free_port(self.host)

    def _run_as(self) -> RunAs | None:
        """The identity to run as; ``None`` means ours."""
        return None

    async def _prepare(self) -> None:
        """Create the home dir; subclasses add one-time setup (config files, initdb)."""
        self.home.mkdir(parents=True, exist_ok=True)

    async def _after_ready(self) -> None:  # noqa: B027 - optional hook
        """Work to do once the server is ready (create a database, say)."""

    def _require_process(self) -> ManagedProcess:
        if self.process is None:
            raise DevstackError(f"{self.name} was never started")
        return self.process

    async def start(self) -> None:
        """Prepare the data dir, spawn the server and wait until it is ready."""
        if self.running:
            raise DevstackError(f"{self.name} is already running on port {self.port}")
        loop = asyncio.get_running_loop()
        began = loop.time()
        await self._prepare()
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            if not self._port_chosen:
                self.port = self._free_port()
            process = self._process_for(self._argv())
            await process.start()
            try:
                await process.wait_ready(timeout=self.start_timeout)
            except ProcessExitedError:
                if self._port_chosen or attempt == _PORT_ATTEMPTS:
                    raise
                continue  # most likely the picked port was taken meanwhile: pick another
            except BaseException:
                await process.kill()
                raise
            break
        self._port_chosen = True
        try:
            await self._after_ready()
        except BaseException:
            await process.kill()
            raise
        self.startup_seconds = loop.time() - began

    def _process_for(self, argv: list[str]) -> ManagedProcess:
        """The (reused) process object, updated with this start's command line."""
        if self.process is None:
            self.process = ManagedProcess(
                self.label,
                argv,
                log_path=self.log_path,
                ready_check=self._ready,
                death_signal=self.death_signal,
                netns=self.netns,
            )
        self.process.argv = argv
        self.process.run_as = self._run_as()
        return self.process

    async def stop(self, *, timeout: float = 15.0) -> int | None:
        """Graceful stop (``stop_signal``), SIGKILL after ``timeout``; returns the exit code."""
        if self.process is None:
            return None
        return await self.process.terminate(timeout, sig=self.stop_signal)

    async def kill(self) -> None:
        """SIGKILL the server (and its children): a crash, as far as its data is concerned."""
        if self.process is not None:
            await self.process.kill()

    async def restart(self) -> None:
        """Graceful stop, then start again on the same port with the same data."""
        await self.stop()
        await self.start()

    def pause(self) -> None:
        """SIGSTOP: the server keeps its sockets open but answers nothing."""
        self._require_process().pause()

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        self._require_process().resume()

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
