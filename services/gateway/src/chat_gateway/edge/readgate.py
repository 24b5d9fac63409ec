"""When a connection's bytes are read: in slices, and not at all while it must wait.

A :class:`ReadGate` stands between a transport and the frame parser. Bytes are handed on
in slices of at most ``slice_size`` (so a budget can be checked between two slices, however
much arrived at once); while any *reason* to wait holds (the read budget in debt, a full
inbox), nothing is handed on and the transport's reading is paused, so TCP flow control
holds the peer back. When the last reason is lifted, what was left is handed on and
reading resumes. :meth:`ReadGate.charge` pays what was read from the connection's
:class:`~chat_gateway.edge.budget.ReadBudget`: in debt, reading waits until it is paid.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from chat_gateway.edge.budget import ReadBudget
from chat_gateway.metrics import READ_PAUSES

__all__ = ["BUDGET", "FULL", "ReadGate"]

BUDGET, FULL = 1, 2
"""Reasons reading waits: the read budget is in debt; the reader's inbox is full."""


class ReadGate:
    """Slices and pauses one transport's reading."""

    __slots__ = ("_budget", "_consume", "_offset", "_paused", "_pending", "_slice", "_stopped",
                 "_transport")  # fmt: skip

    def __init__(
        self,
        transport: asyncio.Transport,
        consume: Callable[[bytes], None],
        *,
        slice_size: int,
        budget: ReadBudget | None,
    ) -> None:
        self._transport = transport
        self._budget = budget
        self._consume = consume
        self._slice = slice_size
        self._pending = b""
        self._offset = 0
        self._paused = 0
        self._stopped = False

    def paused_for(self, reason: int) -> bool:
        return bool(self._paused & reason)

    def feed(self, data: bytes) -> None:
        """Bytes from the transport."""
        if self._pending:
            self._pending = self._pending[self._offset :] + data
            self._offset = 0
        else:
            self._pending, self._offset = data, 0
        self._pump()

    def _pump(self) -> None:
        while self._offset < len(self._pending) and not self._paused:
            if not self._offset and len(self._pending) <= self._slice:
                chunk, self._pending = self._pending, b""
            else:
                end = self._offset + self._slice
                chunk = self._pending[self._offset : end]
                self._offset = end
            self._consume(chunk)
        if self._offset >= len(self._pending):
            self._pending, self._offset = b"", 0

    def charge(self, tokens: int) -> bool:
        """Pay ``tokens`` for what was read; ``True`` when the connection is to be cut (it
        stayed over budget too long). In debt, reading waits until the debt is paid."""
        if not tokens or self._budget is None:
            return False
        verdict = self._budget.charge(tokens)
        if verdict.cut:
            return True
        if verdict.pause_s > 0:
            READ_PAUSES.inc()
            self.pause(BUDGET)
            asyncio.get_running_loop().call_later(verdict.pause_s, self.unpause, BUDGET)
        return False

    def pause(self, reason: int) -> None:
        """Stop handing bytes on, and reading, until ``reason`` is lifted."""
        if not self._paused and not self._transport.is_closing():
            self._transport.pause_reading()
        self._paused |= reason

    def unpause(self, reason: int) -> None:
        """``reason`` no longer holds: when no other does, hand on what was left and read."""
        if not self._paused & reason:
            return
        self._paused &= ~reason
        if self._paused or self._stopped:
            return
        self._pump()
        if not self._paused and not self._transport.is_closing():
            self._transport.resume_reading()

    def stop(self) -> None:
        """The transport is gone: drop what was left."""
        self._stopped = True
        self._pending, self._offset = b"", 0
