"""How a drain spreads its closes over time (pure).

A drained gateway closes its clients with 1012 in small batches, evenly over a period, so
that they reconnect to the other gateways a few at a time instead of all at once.
"""

from __future__ import annotations

__all__ = ["DRAIN_TICK_S", "batch_sizes"]

DRAIN_TICK_S = 0.1
"""Closes are never spread finer than this: batches are at least this far apart."""


def batch_sizes(count: int, *, period_s: float, tick_s: float = DRAIN_TICK_S) -> list[int]:
    """Sizes of the batches that close ``count`` clients over ``period_s``.

    One batch per ``tick_s`` at most and never an empty one; sizes differ by at most one,
    larger first. Batch ``i`` starts at ``i * period_s / len(result)``.
    """
    if count <= 0:
        return []
    batches = max(1, min(count, int(period_s / tick_s + 1e-9)))
    size, extra = divmod(count, batches)
    return [size + 1 if i < extra else size for i in range(batches)]
