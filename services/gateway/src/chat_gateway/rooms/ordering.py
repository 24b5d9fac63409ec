"""Per-room delivery order at a gateway (pure, no I/O).

Messages of a room reach a gateway over NATS possibly out of order (several history
instances publish) or with holes (a publisher died between commit and publish). The
sequencer releases them strictly in ``seq`` order, drops duplicates, and says which range
is missing so the I/O layer can fill it from history.

Until the room's head is known (:meth:`start`), everything is held back.
"""

from __future__ import annotations

from typing import Generic, TypeVar

__all__ = ["RoomSequencer"]

T = TypeVar("T")


class RoomSequencer(Generic[T]):
    """Releases items in gap-free ``seq`` order."""

    def __init__(self, *, max_buffered: int = 10_000) -> None:
        self.next_seq: int | None = None
        self._held: dict[int, T] = {}
        self._max_buffered = max_buffered

    @property
    def started(self) -> bool:
        return self.next_seq is not None

    def start(self, last_seq: int) -> list[T]:
        """Set the head: everything up to ``last_seq`` is known to the members already.

        Calling it again with an older head changes nothing; a newer head skips ahead.
        """
        if self.next_seq is None or last_seq + 1 > self.next_seq:
            self.next_seq = last_seq + 1
        for seq in [s for s in self._held if s < self.next_seq]:
            del self._held[seq]
        return self._release()

    def offer(self, seq: int, item: T) -> list[T]:
        """Take one item; returns what can be released now, in order."""
        if self.next_seq is not None and seq < self.next_seq:
            return []
        if len(self._held) >= self._max_buffered and seq not in self._held:
            raise OverflowError("too many messages held back waiting for a gap")
        self._held.setdefault(seq, item)
        return self._release() if self.next_seq is not None else []

    def missing(self) -> tuple[int, int] | None:
        """``(after_seq, before_seq)`` bounds (exclusive) of the first hole, if any."""
        if self.next_seq is None or not self._held or self.next_seq in self._held:
            return None
        return self.next_seq - 1, min(self._held)

    def _release(self) -> list[T]:
        out: list[T] = []
        assert self.next_seq is not None
        while self.next_seq in self._held:
            out.append(self._held.pop(self.next_seq))
            self.next_seq += 1
        return out
