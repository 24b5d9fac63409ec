"""ManagedProcess: readiness, exit detection, stop escalation, pause/resume, no orphans."""

from __future__ import annotations

import asyncio
import signal
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from chat_devstack.errors import ProcessExitedError, ReadyTimeoutError
from chat_devstack.process import ManagedProcess


def _python(tmp_path: Path, code: str, name: str = "child") -> ManagedProcess:
    return ManagedProcess(
        name, [sys.executable, "-c", textwrap.dedent(code)], log_path=tmp_path / f"{name}.log"
    )


def _state(pid: int) -> str:
    """The one-letter state of ``pid`` from /proc ("" once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat[stat.rfind(")") + 2]


async def _eventually(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - /proc state changes notify nobody
            await asyncio.sleep(0.01)
    return True


async def test_ready_when_check_passes_then_terminates(tmp_path: Path) -> None:
    """wait_ready returns once the check passes; terminate returns the exit code."""
    marker = tmp_path / "ready"
    proc = _python(tmp_path, f"""
        import pathlib, signal, sys, time
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        print("hello from child", flush=True)
        pathlib.Path({str(marker)!r}).touch()
        while True:
            time.sleep(1)
    """)  # fmt: skip

    async def check() -> bool:
        return marker.exists()

    await proc.start()
    await proc.wait_ready(check, timeout=10)
    running = proc.running
    code = await proc.terminate()
    assert running
    assert code == 0
    assert not proc.running
    assert "hello from child" in proc.log_tail()


async def test_exit_before_ready_raises_with_log_tail(tmp_path: Path) -> None:
    """A process that dies while we wait raises ProcessExitedError with its output."""
    proc = _python(tmp_path, "import sys; print('boom: bad config'); sys.exit(3)")

    async def never() -> bool:
        return False

    await proc.start()
    with pytest.raises(ProcessExitedError) as info:
        await proc.wait_ready(never, timeout=30)
    assert info.value.returncode == 3
    assert "boom: bad config" in info.value.log_tail


async def test_not_ready_in_time_raises_timeout(tmp_path: Path) -> None:
    """A process that never passes its check raises ReadyTimeoutError after the timeout."""
    proc = _python(tmp_path, "import time; time.sleep(60)")

    async def refused() -> bool:
        raise ConnectionRefusedError

    await proc.start()
    try:
        with pytest.raises(ReadyTimeoutError) as info:
            await proc.wait_ready(refused, timeout=0.3)
    finally:
        await proc.kill()
    assert "ConnectionRefusedError" in info.value.log_tail


async def test_terminate_escalates_to_sigkill(tmp_path: Path) -> None:
    """A process ignoring SIGTERM is SIGKILLed after the timeout."""
    marker = tmp_path / "ignoring"
    proc = _python(tmp_path, f"""
        import pathlib, signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        pathlib.Path({str(marker)!r}).touch()
        time.sleep(60)
    """)  # fmt: skip
    await proc.start()
    await _eventually(marker.exists)
    code = await proc.terminate(timeout=0.3)
    assert code == -signal.SIGKILL


async def test_pause_and_resume(tmp_path: Path) -> None:
    """pause() stops the process (state T), resume() lets it run again."""
    proc = _python(tmp_path, "import time; time.sleep(60)")
    await proc.start()
    assert proc.pid is not None
    pid = proc.pid
    proc.pause()
    stopped = await _eventually(lambda: _state(pid) == "T")
    proc.resume()
    resumed = await _eventually(lambda: _state(pid) not in ("T", ""))
    await proc.kill()
    assert (stopped, resumed) == (True, True)
    assert proc.returncode == -signal.SIGKILL


async def test_kill_takes_the_whole_process_group(tmp_path: Path) -> None:
    """kill() also ends the grandchildren (like Postgres backends)."""
    pid_file = tmp_path / "grandchild.pid"
    proc = _python(tmp_path, f"""
        import pathlib, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        pathlib.Path({str(pid_file)!r}).write_text(str(child.pid))
        time.sleep(60)
    """)  # fmt: skip
    await proc.start()
    await _eventually(lambda: pid_file.exists() and pid_file.read_text() != "")
    grandchild = int(pid_file.read_text())
    await proc.kill()
    assert await _eventually(lambda: _state(grandchild) in ("", "Z"))


async def test_children_die_with_their_parent(tmp_path: Path) -> None:
    """If the owning Python process dies abruptly, its managed children get SIGTERM."""
    script = f"""
        import asyncio, os, sys
        from pathlib import Path
        from chat_devstack.process import ManagedProcess

        async def main():
            proc = ManagedProcess("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"],
                                  log_path=Path({str(tmp_path / "sleeper.log")!r}))
            await proc.start()
            print(proc.pid, flush=True)
            os._exit(0)

        asyncio.run(main())
    """
    owner = await asyncio.create_subprocess_exec(
        sys.executable, "-c", textwrap.dedent(script), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await owner.communicate()
    orphan = int(out.decode().strip())
    assert await _eventually(lambda: _state(orphan) in ("", "Z"))
