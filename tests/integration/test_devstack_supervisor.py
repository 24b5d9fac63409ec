"""`chat-stack run` restarts a part that dies and still stops everything in order on Ctrl-C.

The first test runs the real command (real servers and services) and SIGKILLs a service and
a server twice each. The others drive :meth:`Stack.supervise` in-process with stand-in
services (no servers: their URLs are given as external) to stop it while a restart is
pending or in progress, and to see a crash loop reported without stopping the stack.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import psutil
import pytest

from chat_devstack.probes import http_get_status, redis_command
from chat_devstack.restart import RestartPolicy
from chat_devstack.stack import Stack, StackConfig
from tests.support.fakeservices import write_fake_services

pytestmark = pytest.mark.integration

_POLL = 0.05


async def _until(condition: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    """Poll a (sync) condition until it holds; fail naming ``what`` after ``timeout`` s."""
    try:
        async with asyncio.timeout(timeout):
            while not condition():  # noqa: ASYNC110 - other processes notify nobody
                await asyncio.sleep(_POLL)
    except TimeoutError:
        pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


class ChatStackCommand:
    """``chat-stack run`` as a child process, its stdout and stderr collected line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.seen: dict[int, psutil.Process] = {}
        """Every descendant process ever seen, by pid (to check none is left at the end)."""
        assert proc.stdout is not None
        self._reader = asyncio.ensure_future(self._read(proc.stdout))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        async for line in stream:
            self.lines.append(line.decode(errors="replace").rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def count(self, pattern: str) -> int:
        return sum(1 for line in self.lines if re.search(pattern, line))

    def child(self, matches: Callable[[psutil.Process], bool]) -> psutil.Process | None:
        """The running child of ``chat-stack`` that ``matches``; records every descendant.

        Fails the test if ``chat-stack`` itself has exited.
        """
        code = self.proc.returncode
        assert code is None, f"chat-stack exited with code {code}:\n{self.output}"
        found = None
        for proc in psutil.Process(self.proc.pid).children(recursive=True):
            self.seen.setdefault(proc.pid, proc)
            try:
                if matches(proc) and proc.status() != psutil.STATUS_ZOMBIE:
                    found = proc
            except psutil.NoSuchProcess:
                continue
        return found

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        await asyncio.gather(self._reader, return_exceptions=True)


def _is_session(proc: psutil.Process) -> bool:
    return "chat_session" in proc.cmdline()


def _is_redis(proc: psutil.Process) -> bool:
    return proc.name().startswith("redis-server")


async def _kill_and_see_it_back(
    stack: ChatStackCommand,
    name: str,
    matches: Callable[[psutil.Process], bool],
    attempt: int,
    ready: Callable[[], Awaitable[bool]],
) -> None:
    """SIGKILL the child that ``matches``; wait for a new one, for ``ready``, and for the log."""
    victim = stack.child(matches)
    assert victim is not None, f"{name} is not running"
    victim.kill()

    def replaced() -> bool:
        new = stack.child(matches)
        return new is not None and new.pid != victim.pid

    await _until(replaced, f"a new {name} process after kill {attempt}")
    # The old process is gone for good now, so a probe that succeeds reached the new one.
    async with asyncio.timeout(60):
        while not await ready():  # noqa: ASYNC110 - other processes notify nobody
            await asyncio.sleep(_POLL)
    exited = rf"{name} exited with code -9 after .* \(attempt {attempt} in a row"
    back = rf"{name} is back \(pid \d+"
    await _until(
        lambda: stack.count(exited) == 1 and stack.count(back) == attempt,
        f"{name}'s exit and return in the stack's output",
    )


@pytest.mark.timeout(300)
async def test_chat_stack_run_restarts_a_killed_service_and_server(tmp_path: Path) -> None:
    """SIGKILLed twice, the session service and Redis each come back ready on the same
    ports with the restart logged, and SIGINT then stops everything with exit code 0."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("NATS_URL", "REDIS_URL", "DATABASE_URL")
    }
    argv = [sys.executable, "-m", "chat_devstack.cli", "run", "--data-dir", str(tmp_path / "data"),
            "--port", "0"]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    stack = ChatStackCommand(proc)
    try:
        await _until(lambda: "Press Ctrl-C to stop." in stack.output, "the stack to start", 120)
        session_port = int(
            re.findall(r"session-1 +http://127\.0\.0\.1:(\d+)/readyz", stack.output)[0]
        )
        redis_port = int(re.findall(r"Redis +redis://127\.0\.0\.1:(\d+)/0", stack.output)[0])

        async def both_ready() -> bool:
            """The session service is ready (so it reaches Redis) and Redis answers PING."""
            try:
                status = await http_get_status("127.0.0.1", session_port, "/readyz")
                return (
                    status == 200
                    and await redis_command("127.0.0.1", redis_port, "PING") == b"+PONG"
                )
            except OSError:
                return False

        for attempt in (1, 2):
            for name, matches in (("session-1", _is_session), ("redis", _is_redis)):
                await _kill_and_see_it_back(stack, name, matches, attempt, both_ready)
        stack.child(lambda _: False)  # record every descendant alive right now
        assert proc.returncode is None
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(60):
            assert await proc.wait() == 0, stack.output
        await asyncio.gather(stack._reader, return_exceptions=True)
    finally:
        await stack.close()
    assert not [p for p in stack.seen.values() if p.is_running()], "processes left behind"
    after_stop = stack.output.split("stopping: services first, then servers ...")[1]
    assert " is back " not in after_stop and "exited with code" not in after_stop
    assert after_stop.strip().endswith("stopped.")


FAKE_SERVICE = """
    import asyncio, os, signal, sys, time

    KIND = __package__.removeprefix("chat_")
    PREFIX = KIND.upper() + "_"
    PIDS = os.path.join(os.environ["FAKE_OUT"], os.environ[PREFIX + "INSTANCE_ID"] + ".pids")

    async def readyz(reader, writer):
        await reader.readline()
        writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: 0\\r\\nConnection: close\\r\\n\\r\\n")
        await writer.drain()
        writer.close()

    async def main():
        restarted = os.path.exists(PIDS)
        with open(PIDS, "a") as f:
            f.write(f"{os.getpid()}\\n")
        if restarted and os.environ.get("FAKE_CRASH_ON_RESTART") == KIND:
            print(KIND, "cannot start again", flush=True)
            sys.exit(3)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        if not (restarted and os.environ.get("FAKE_HANG_ON_RESTART") == KIND):
            port = int(os.environ[PREFIX + "HTTP_PORT"])
            await asyncio.start_server(readyz, "127.0.0.1", port)
        await stop.wait()

    asyncio.run(main())
"""


def _fake_stack(tmp_path: Path, **env: str) -> tuple[Stack, Path]:
    """A stack of stand-in services (servers given as external, so none is started)."""
    selected, out = write_fake_services(tmp_path, FAKE_SERVICE)
    config = StackConfig(
        data_dir=tmp_path / "data",
        gateway_port=0,
        nats_url="nats://127.0.0.1:1",
        redis_url="redis://127.0.0.1:1/0",
        postgres_dsn="postgresql://postgres@127.0.0.1:1/chat",
        extra_env={**selected, **env},
    )
    return Stack(config), out


def _pids(out: Path, name: str) -> list[int]:
    path = out / f"{name}.pids"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


async def _stop_supervised(stack: Stack, supervisor: asyncio.Task[None]) -> None:
    """What ``serve()`` does on Ctrl-C: end the supervisor, then stop in order."""
    supervisor.cancel()
    await asyncio.gather(supervisor, return_exceptions=True)
    await stack.stop()


async def test_stop_while_a_restart_is_pending_starts_nothing(tmp_path: Path) -> None:
    """A service that died is not started again once the stop began, and nothing is left."""
    stack, out = _fake_stack(tmp_path)
    messages: list[str] = []
    await stack.start()
    slow = RestartPolicy(initial_s=30.0, cap_s=30.0)
    supervisor = asyncio.create_task(stack.supervise(slow, report=messages.append))
    try:
        session = stack.of_kind("session")[0]
        assert session.pid is not None
        os.kill(session.pid, signal.SIGKILL)
        await _until(lambda: any("session-1 exited with code -9" in m for m in messages),
                     "the supervisor to see the exit")  # fmt: skip
        assert "restarting it in" in messages[0]
    finally:
        await _stop_supervised(stack, supervisor)
    assert len(_pids(out, "session-1")) == 1
    assert "session-1: restart abandoned, the stack is stopping" in messages
    assert not any(p.running for p in stack.processes)


async def test_stop_while_a_restart_is_in_progress_kills_it(tmp_path: Path) -> None:
    """A service restarted but not yet ready when the stop begins is killed, not left behind."""
    stack, out = _fake_stack(tmp_path, FAKE_HANG_ON_RESTART="session")
    messages: list[str] = []
    await stack.start()
    fast = RestartPolicy(initial_s=0.05, cap_s=0.05)
    supervisor = asyncio.create_task(stack.supervise(fast, report=messages.append))
    try:
        first = _pids(out, "session-1")[0]
        os.kill(first, signal.SIGKILL)
        await _until(lambda: len(_pids(out, "session-1")) == 2, "the restart to spawn")
        second = psutil.Process(_pids(out, "session-1")[1])
        assert second.is_running()
    finally:
        await _stop_supervised(stack, supervisor)
    assert not second.is_running() or second.status() == psutil.STATUS_ZOMBIE
    assert len(_pids(out, "session-1")) == 2
    assert not any(p.running for p in stack.processes)


async def test_a_crash_loop_is_reported_loudly_and_the_stack_keeps_running(
    tmp_path: Path,
) -> None:
    """A service that dies at every restart is retried and called crash looping; the rest
    stays up and the stack still stops cleanly."""
    stack, out = _fake_stack(tmp_path, FAKE_CRASH_ON_RESTART="history")
    messages: list[str] = []
    await stack.start()
    policy = RestartPolicy(initial_s=0.01, cap_s=0.05, loud_after=3)
    supervisor = asyncio.create_task(stack.supervise(policy, report=messages.append))
    try:
        os.kill(_pids(out, "history-1")[0], signal.SIGKILL)
        await _until(lambda: len(_pids(out, "history-1")) >= 5, "several restarts")
        await _until(lambda: sum("CRASH LOOPING" in m for m in messages) >= 2, "the warnings")
        assert not supervisor.done()
        assert all(s.running for s in stack.services if s.kind != "history")
    finally:
        await _stop_supervised(stack, supervisor)
    loud = next(m for m in messages if "CRASH LOOPING" in m)
    assert "history-1 failed to restart (exited with code 3 before it was ready)" in loud
    assert "attempt 3 in a row" in loud
    assert "history cannot start again" in loud  # the tail of its log
    assert not any(p.running for p in stack.processes)
