"""How every service sets up Python's cyclic garbage collector once it is ready.

A gateway holding 10,000 connections keeps a few hundred thousand container objects; with
CPython's default thresholds (700, 10, 10) a *full* collection, which visits every one of
them, ran every 1 to 5 s while a big room filled and paused the event loop 300 to 500 ms
each time, freeing next to nothing (docs/benchmarks.md). Two changes, the usual ones for
long-running servers:

* ``gc.freeze()`` once start-up is done: everything allocated so far (modules, settings,
  clients, handlers) lives as long as the process, so no collection needs to visit it again.
* a young-generation threshold of :data:`GEN0_THRESHOLD` allocations instead of 700, so full
  collections come about 14 times less often; garbage cycles still go, a little later.
"""

from __future__ import annotations

import gc

__all__ = ["GEN0_THRESHOLD", "settle_heap"]

GEN0_THRESHOLD = 10_000


def settle_heap() -> None:
    """Collect what start-up left behind, freeze the rest, and raise the threshold."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
