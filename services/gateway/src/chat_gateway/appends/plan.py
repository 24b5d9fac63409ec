"""Which appends go into the next batch request to history (pure, no I/O).

A gateway sends the ``send_message`` appends of all its connections to history in batch
requests (:mod:`chat_gateway.appends.batcher`). Each sender's messages must get their room's
seqs in the order it sent them, while its events are handled concurrently (pipelined):

* A connection *reserves* a :class:`Slot` when an event arrives, in arrival order, and
  later *fills* it with the encoded append (or *cancels* it: the event was refused before
  it got there). A connection's appends leave in slot order: an unfilled slot holds back
  the ones behind it.
* A connection has at most one batch in flight. History commits a batch in one
  transaction, in the order of its items, so a connection's next batch can only be
  committed after its previous one, whichever history instance takes it.
* A batch holds at most ``max_items`` appends and about ``max_bytes`` (always at least
  one append). Connections take turns at the head of the batch, so a busy one cannot
  keep the others out.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from enum import Enum
from typing import Generic, TypeVar

__all__ = ["AppendPlan", "Slot"]

T = TypeVar("T")


class _State(Enum):
    RESERVED = "reserved"
    READY = "ready"
    CANCELLED = "cancelled"


class Slot(Generic[T]):
    """One append's place in its connection's order."""

    __slots__ = ("item", "sender", "size", "state")

    def __init__(self, sender: str) -> None:
        self.sender = sender
        self.item: T | None = None
        self.size = 0
        self.state = _State.RESERVED

    @property
    def ready(self) -> bool:
        return self.state is _State.READY


class AppendPlan(Generic[T]):
    """The waiting appends of every connection, and which connections have a batch out."""

    def __init__(self, *, max_items: int, max_bytes: int) -> None:
        self._max_items = max_items
        self._max_bytes = max_bytes
        self._queues: OrderedDict[str, deque[Slot[T]]] = OrderedDict()
        self._in_flight: set[str] = set()

    def __len__(self) -> int:
        """Appends reserved and not yet taken."""
        return sum(len(q) for q in self._queues.values())

    def reserve(self, sender: str) -> Slot[T]:
        """The next place in ``sender``'s order."""
        slot: Slot[T] = Slot(sender)
        queue = self._queues.get(sender)
        if queue is None:
            queue = self._queues[sender] = deque()
        queue.append(slot)
        return slot

    def fill(self, slot: Slot[T], item: T, size: int) -> None:
        """``slot`` holds ``item`` (``size`` bytes) and may leave."""
        if slot.state is _State.RESERVED:
            slot.item, slot.size, slot.state = item, size, _State.READY

    def cancel(self, slot: Slot[T]) -> None:
        """``slot`` will never be filled: the appends behind it need not wait for it."""
        if slot.state is _State.RESERVED:
            slot.state = _State.CANCELLED
            self._trim(slot.sender)

    def ready(self) -> bool:
        """Whether :meth:`take` would return anything."""
        return any(
            sender not in self._in_flight and queue[0].state is not _State.RESERVED
            for sender, queue in self._queues.items()
        )

    def take(self) -> list[Slot[T]]:
        """The next batch (may be empty): for each connection without a batch out, its
        filled appends in order, up to the first one still being prepared; marks those
        connections as having a batch out."""
        batch: list[Slot[T]] = []
        size = 0
        served: list[str] = []
        for sender, queue in self._queues.items():
            if sender in self._in_flight:
                continue
            self._trim_queue(queue)
            took = False
            while queue and queue[0].ready and len(batch) < self._max_items:
                if batch and size + queue[0].size > self._max_bytes:
                    break
                slot = queue.popleft()
                batch.append(slot)
                size += slot.size
                took = True
                self._trim_queue(queue)
            if took:
                served.append(sender)
            if len(batch) >= self._max_items or size >= self._max_bytes:
                break
        for sender in served:
            self._in_flight.add(sender)
            self._queues.move_to_end(sender)  # the others go first next time
        self._drop_empty()
        return batch

    def done(self, batch: list[Slot[T]]) -> None:
        """The batch is answered: its connections may send their next appends."""
        for slot in batch:
            self._in_flight.discard(slot.sender)

    def _trim(self, sender: str) -> None:
        queue = self._queues.get(sender)
        if queue is not None:
            self._trim_queue(queue)
            if not queue:
                del self._queues[sender]

    @staticmethod
    def _trim_queue(queue: deque[Slot[T]]) -> None:
        while queue and queue[0].state is _State.CANCELLED:
            queue.popleft()

    def _drop_empty(self) -> None:
        for sender in [c for c, q in self._queues.items() if not q]:
            del self._queues[sender]
