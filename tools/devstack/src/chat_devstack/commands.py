"""Running one-shot helper commands (initdb, psql, createdb) to completion."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Mapping, Sequence

from ._posix import RunAs, make_preexec
from .errors import CommandError

__all__ = ["run_command"]


async def run_command(
    argv: Sequence[str],
    *,
    run_as: RunAs | None = None,
    netns: str | None = None,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
    timeout: float = 120.0,
) -> str:
    """Run ``argv`` (on the test host ``netns`` and taking on ``run_as``, if given) and
    return its stdout.

    Raises :class:`CommandError` with the combined output when it exits non-zero, and kills
    it on ``timeout``.
    """
    args = [str(arg) for arg in argv]
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(os.environ if env is None else env),
        preexec_fn=make_preexec(run_as, signal.SIGKILL, netns),
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate(stdin)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise CommandError(args, -9, f"timed out after {timeout}s") from None
    if proc.returncode != 0:
        text = (out + err).decode(errors="replace")
        raise CommandError(args, proc.returncode or -1, text)
    return out.decode(errors="replace")
