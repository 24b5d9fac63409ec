"""Who at this gateway gets which event of a room, and when (pure, no I/O).

One :class:`RoomDelivery` per room a gateway has members in. It holds the room's local
members and its :class:`~chat_gateway.rooms.ordering.RoomSequencer`, and turns each event that
arrives (a message with its ``seq``, or presence without one) into *deliveries*: the
event and the members to write it to, in order. The I/O layer (:mod:`chat_gateway.rooms.hub`)
only encodes and writes them, subscribes, and fills gaps from history.

The rules:

* **Messages in seq order, once.** A member gets a room's messages gap-free and in ``seq``
  order; a hole is reported (:attr:`Outcome.gap`) for the I/O layer to fill from history;
  too many messages held back for a hole is reported too (:attr:`Outcome.overflow`): the
  members are then cut (4008) and resync from history.
* **Joining without loss or repeats.** A member starts *pending*: events collect in its
  buffer while its join (or resume) is under way. :meth:`RoomDelivery.activate` makes it
  live with its *join position*, the seq of the last message its join answer carried: buffered
  messages above the join position are delivered, the others skipped; presence is delivered as it
  came. The first member's join position also starts the room's sequencer (a running room is never
  moved back or forward by a join).
* **Resuming.** :meth:`RoomDelivery.replay` delivers the messages a resumed member missed,
  then activates it at the last of them.
* **Leaving.** :meth:`RoomDelivery.hold` makes a live member pending again while its leave
  is recorded; :meth:`RoomDelivery.release` undoes it when the leave fails (nothing lost,
  nothing repeated), :meth:`RoomDelivery.remove` when it succeeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from chat_gateway.rooms.ordering import RoomSequencer

__all__ = ["Delivery", "Event", "Member", "Outcome", "RoomDelivery"]

C = TypeVar("C")
E = TypeVar("E", bound="Event")


class Event(Protocol):
    """What the core needs of an event: its ``seq`` (``None`` for presence)."""

    @property
    def seq(self) -> int | None: ...


@dataclass(slots=True)
class Member(Generic[C, E]):
    client: C
    join_position: int = 0
    """The seq of the last message this member has (from its join or resume answer)."""
    buffer: list[E] | None = field(default_factory=list)
    """Events held while the member is pending; ``None`` once it is live."""


@dataclass(frozen=True, slots=True)
class Delivery(Generic[C, E]):
    """Write ``event`` to each of ``clients``, in this order after earlier deliveries."""

    event: E
    clients: list[C]


@dataclass(slots=True)
class Outcome(Generic[C, E]):
    deliveries: list[Delivery[C, E]] = field(default_factory=list)
    gap: tuple[int, int] | None = None
    """``(after_seq, before_seq)``, exclusive: messages to fetch from history."""
    overflow: bool = False
    """Too many messages wait for a gap: cut every member of the room (they resync)."""


class RoomDelivery(Generic[C, E]):
    """One room's local members and the order of its events."""

    def __init__(self, *, max_held: int = 10_000) -> None:
        self.members: dict[str, Member[C, E]] = {}
        self._sequencer: RoomSequencer[E] = RoomSequencer(max_buffered=max_held)

    @property
    def started(self) -> bool:
        """Whether the room's head is known (a member has been activated)."""
        return self._sequencer.started

    def add(self, key: str, client: C) -> Member[C, E]:
        """``client`` becomes a pending member (its events are held until activated)."""
        member = self.members.get(key)
        if member is None:
            member = self.members[key] = Member(client)
        return member

    def remove(self, key: str) -> bool:
        """Drop a member; ``True`` when the room has no local member left."""
        self.members.pop(key, None)
        return not self.members

    def activate(self, member: Member[C, E], *, join_position: int) -> list[Delivery[C, E]]:
        """The member's join answer is out, carrying every message up to ``join_position``: deliver
        what it missed since (from its buffer), then live events. Starts the room at
        ``join_position`` if nobody did before."""
        if member.buffer is None:
            return []
        member.join_position = join_position
        out = self._flush(member)
        if not self._sequencer.started:
            for event in self._sequencer.start(join_position):
                out += self._deliver(event)
        return out

    def replay(
        self, member: Member[C, E], missed: list[E], *, join_position: int
    ) -> list[Delivery[C, E]]:
        """Resume: ``missed`` (in seq order, after ``join_position``) go to the member first, then
        it is activated at the last of them."""
        out = [Delivery(event, [member.client]) for event in missed]
        last = join_position
        for event in missed:
            if event.seq is not None:
                last = event.seq
        return out + self.activate(member, join_position=last)

    def hold(self, key: str) -> None:
        """Collect a live member's events again (while its leave is being recorded)."""
        member = self.members.get(key)
        if member is not None and member.buffer is None:
            member.buffer = []

    def release(self, key: str) -> list[Delivery[C, E]]:
        """Undo :meth:`hold`: what was collected, then live events again."""
        member = self.members.get(key)
        return self._flush(member) if member is not None else []

    def offer(self, event: E) -> Outcome[C, E]:
        """An event from the room's subject (or a gap fill): what to deliver now."""
        outcome: Outcome[C, E] = Outcome()
        seq = event.seq
        if seq is None:
            outcome.deliveries = self._deliver(event)
            return outcome
        try:
            released = self._sequencer.offer(seq, event)
        except OverflowError:
            outcome.overflow = True
            return outcome
        for ready in released:
            outcome.deliveries += self._deliver(ready)
        outcome.gap = self._sequencer.missing()
        return outcome

    def missing(self) -> tuple[int, int] | None:
        """The first hole still open, if any."""
        return self._sequencer.missing()

    def _deliver(self, event: E) -> list[Delivery[C, E]]:
        seq = event.seq
        clients: list[C] = []
        for member in self.members.values():
            if member.buffer is not None:
                member.buffer.append(event)
            elif seq is None or seq > member.join_position:
                clients.append(member.client)
        return [Delivery(event, clients)] if clients else []

    def _flush(self, member: Member[C, E]) -> list[Delivery[C, E]]:
        buffer, member.buffer = member.buffer, None
        return [
            Delivery(event, [member.client])
            for event in buffer or ()
            if event.seq is None or event.seq > member.join_position
        ]
