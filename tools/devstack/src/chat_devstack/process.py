"""One child process we own: spawn, wait until ready, pause, stop, kill.

Every child runs in its own session (process group), so a Ctrl-C in the terminal reaches
only ``chat-stack`` (which then stops children in order), and ``kill``/``pause`` act on the
whole group (a Postgres server with its backends, say). Children also get a parent-death
signal, so a crashed test run does not leave servers behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

import psutil

from ._posix import RunAs, group_alive, make_preexec, signal_group
from .errors import DevstackError, ProcessExitedError, ReadyTimeoutError

__all__ = ["ManagedProcess", "ReadyCheck", "RunAs"]

ReadyCheck = Callable[[], Awaitable[bool]]
"""An async probe: ``True`` when the process serves requests. Exceptions count as "not yet"."""

_POLL_INTERVAL = 0.05
_FIRST_POLL_INTERVAL = 0.005
_PROBE_TIMEOUT = 2.0


class ManagedProcess:
    """A child process with its stdout and stderr appended to ``log_path``.

    ``run_as`` is the identity the child takes on (see :class:`RunAs`; ``None``: ours);
    ``netns`` the test host it runs on (:mod:`chat_devstack.hosts`; ``None``: this one).
    ``ready_check`` is the default probe of :meth:`wait_ready`.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        run_as: RunAs | None = None,
        ready_check: ReadyCheck | None = None,
        death_signal: signal.Signals | None = signal.SIGTERM,
        netns: str | None = None,
    ) -> None:
        self.name = name
        self.netns = netns
        self.argv = list(argv)
        self.env = dict(os.environ if env is None else env)
        self.log_path = log_path
        self.cwd = cwd
        self.run_as = run_as
        self.ready_check = ready_check
        self.death_signal = death_signal
        self._proc: asyncio.subprocess.Process | None = None
        self._exited: asyncio.Task[int] | None = None
        self._paused = False

    def __repr__(self) -> str:
        return f"<ManagedProcess {self.name} pid={self.pid} returncode={self.returncode}>"

    @property
    def pid(self) -> int | None:
        """The pid of the last process started, or ``None`` if never started."""
        return None if self._proc is None else self._proc.pid

    @property
    def returncode(self) -> int | None:
        """Exit code (negative signal number when killed); ``None`` while running."""
        return None if self._proc is None else self._proc.returncode

    @property
    def running(self) -> bool:
        """Started and not exited yet (a paused process is running)."""
        return self._proc is not None and self._proc.returncode is None

    @property
    def paused(self) -> bool:
        """Stopped with :meth:`pause` and not resumed since."""
        return self._paused and self.running

    async def start(self) -> None:
        """Spawn the process; returns once it is spawned, not once it is ready."""
        if self.running:
            raise DevstackError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with self.log_path.open("ab") as log:
            log.write(f"\n=== {stamp} start {self.name}: {shlex.join(self.argv)}\n".encode())
            log.flush()
            self._proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
                preexec_fn=make_preexec(self.run_as, self.death_signal, self.netns),
            )
        self._paused = False
        self._exited = asyncio.ensure_future(self._proc.wait())

    async def wait(self) -> int:
        """Wait for the process to exit and return its exit code."""
        if self._exited is None:
            raise DevstackError(f"{self.name} was never started")
        return await asyncio.shield(self._exited)

    async def wait_ready(self, check: ReadyCheck | None = None, timeout: float = 30.0) -> None:
        """Poll ``check`` (default: ``ready_check``) until it returns ``True``.

        The interval starts at 5 ms and doubles up to 50 ms, so fast servers are seen fast.

        Raises :class:`ProcessExitedError` as soon as the process exits and
        :class:`ReadyTimeoutError` after ``timeout`` seconds; both carry the log tail.
        """
        probe = check if check is not None else self.ready_check
        if probe is None:
            raise DevstackError(f"{self.name}: no readiness check given")
        if self._exited is None:
            raise DevstackError(f"{self.name} was never started")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last_error = ""
        interval = _FIRST_POLL_INTERVAL
        while True:
            if self._exited.done():
                raise ProcessExitedError(self.name, self._exited.result(), self.log_tail())
            remaining = deadline - loop.time()
            if remaining <= 0:
                tail = self.log_tail() + (
                    f"\n(last probe error: {last_error})" if last_error else ""
                )
                raise ReadyTimeoutError(self.name, timeout, tail)
            try:
                async with asyncio.timeout(min(remaining, _PROBE_TIMEOUT)):
                    if await probe():
                        return
            except Exception as exc:  # any failure of the probe means "not ready yet"
                last_error = repr(exc)
            await asyncio.wait({self._exited}, timeout=min(interval, remaining))
            interval = min(interval * 2, _POLL_INTERVAL)

    async def terminate(
        self, timeout: float = 10.0, *, sig: signal.Signals = signal.SIGTERM
    ) -> int | None:
        """Send ``sig`` (SIGTERM), wait up to ``timeout`` s, then SIGKILL the group.

        Returns the exit code, or ``None`` if the process was never started.
        """
        if self._proc is None:
            return None
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(sig)
            if self._paused:
                self.resume()
            try:
                async with asyncio.timeout(timeout):
                    await self.wait()
            except TimeoutError:
                await self.kill()
        signal_group(self._proc.pid, signal.SIGKILL)  # leftovers of a clean exit, if any
        return self._proc.returncode

    async def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL the whole process group and wait until none of it is left."""
        if self._proc is None:
            return
        signal_group(self._proc.pid, signal.SIGKILL)
        self._paused = False
        await self.wait()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # Orphaned children (Postgres backends) die asynchronously; nothing notifies us.
        while group_alive(self._proc.pid) and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(_POLL_INTERVAL)

    def _tree(self) -> list[psutil.Process]:
        """The process and every descendant, parents first (Postgres backends call
        ``setsid``, so they are not in the process group)."""
        if self._proc is None:
            return []
        try:
            root = psutil.Process(self._proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def pause(self) -> None:
        """SIGSTOP the process, its group and all its descendants: alive, answering nothing."""
        if self._proc is not None and self.running:
            signal_group(self._proc.pid, signal.SIGSTOP)
            for proc in self._tree():
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.send_signal(signal.SIGSTOP)
            self._paused = True
            # kill() returns before the kernel has stopped the process: wait (briefly) until
            # it has, or it may still answer a probe sent right after.
            deadline = time.monotonic() + 1.0
            with contextlib.suppress(psutil.NoSuchProcess):
                target = psutil.Process(self._proc.pid)
                while target.status() != psutil.STATUS_STOPPED and time.monotonic() < deadline:
                    time.sleep(0.001)

    def resume(self) -> None:
        """SIGCONT everything :meth:`pause` stopped."""
        if self._proc is not None and self.running:
            for proc in reversed(self._tree()):
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.send_signal(signal.SIGCONT)
            signal_group(self._proc.pid, signal.SIGCONT)
        self._paused = False

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the log file (empty if there is none)."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - 16384))
                data = log.read()
        except OSError:
            return ""
        return "\n".join(data.decode(errors="replace").splitlines()[-lines:])
