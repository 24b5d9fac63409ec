"""Errors raised by the dev stack.

Tree::

    DevstackError            root of every error this package raises on purpose
    ├── StartupError         a child process did not become ready (carries the log tail)
    │   ├── ProcessExitedError   it exited while we waited for it
    │   └── ReadyTimeoutError    it kept running but never passed its readiness check
    └── CommandError         a one-shot helper command (initdb, psql, useradd) failed
"""

from __future__ import annotations

__all__ = [
    "CommandError",
    "DevstackError",
    "ProcessExitedError",
    "ReadyTimeoutError",
    "StartupError",
]


class DevstackError(Exception):
    """Root of the errors raised by ``chat_devstack``."""


class StartupError(DevstackError):
    """A managed process did not become ready; ``log_tail`` holds the end of its log."""

    def __init__(self, name: str, reason: str, log_tail: str) -> None:
        super().__init__(f"{name}: {reason}\n--- last lines of its log ---\n{log_tail}")
        self.name = name
        self.reason = reason
        self.log_tail = log_tail


class ProcessExitedError(StartupError):
    """The process exited (with ``returncode``) before it was ready."""

    def __init__(self, name: str, returncode: int, log_tail: str) -> None:
        super().__init__(name, f"exited with code {returncode} before it was ready", log_tail)
        self.returncode = returncode


class ReadyTimeoutError(StartupError):
    """The process was still running but not ready after ``timeout`` seconds."""

    def __init__(self, name: str, timeout: float, log_tail: str) -> None:
        super().__init__(name, f"not ready after {timeout:.1f}s", log_tail)
        self.timeout = timeout


class CommandError(DevstackError):
    """A helper command exited non-zero; ``output`` is what it printed."""

    def __init__(self, argv: list[str], returncode: int, output: str) -> None:
        super().__init__(f"{argv[0]} exited with code {returncode}: {output.strip()}")
        self.argv = argv
        self.returncode = returncode
        self.output = output
