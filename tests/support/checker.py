"""A history checker, Jepsen-style (pure, no I/O): what clients saw, against what was stored.

During a scenario every client records into one :class:`History`: each send (by its
``clientMsgId``), each ack with its seq, each error or unknown outcome (a timeout, a
dropped connection), each message delivered to it, when it joined and left each room, and
each read watermark it was told. After the faults have healed, the test reads the
messages table of the Postgres that is primary by then and calls :func:`check`. The
:class:`Verdict` counts what went wrong; a scenario passes when every count that concerns
an acknowledged message is 0:

* ``lost``: acknowledged, not stored (or stored at another seq: ``seq_changed``);
* ``duplicated``: a ``clientMsgId`` stored twice, or a seq used twice in a room;
* ``gaps``: a room whose stored seqs are not 1..max;
* ``missed``: an acknowledged message (by its ``clientMsgId``) not delivered to a member
  that was joined, with no leave, from before the message's stored seq to the end;
* ``phantoms``: a message delivered to a client that is not stored in the end (it was
  shown, then it vanished: a rewound primary's commit);
* ``out_of_order`` and ``redelivered``: a client that saw a room's seqs go back, or the same
  seq twice;
* ``watermark_back``: a read watermark a client was told that is below one it was told
  before in the same room.

What is allowed is counted too: sends never acknowledged are either stored
(``unacked_stored``) or not (``unacked_lost``); the longest time with sends waiting and
none acknowledged is ``longest_stall_s``.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

__all__ = ["History", "Stored", "Verdict", "check"]


@dataclass(frozen=True, slots=True)
class Stored:
    """One row of the messages table."""

    room: str
    seq: int
    client_msg_id: str


@dataclass
class _Send:
    client: str
    room: str
    sent_at: float
    acked_seq: int | None = None
    acked_at: float | None = None
    errors: list[str] = field(default_factory=list)
    last_error_at: float | None = None

    @property
    def settled_at(self) -> float | None:
        """When the client stopped waiting for it: its ack, else its last error."""
        return self.acked_at if self.acked_at is not None else self.last_error_at


@dataclass
class History:
    """Everything the clients of one scenario did and saw, in the order they saw it."""

    sends: dict[str, _Send] = field(default_factory=dict)
    deliveries: dict[tuple[str, str], list[tuple[int, str]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    """(client, room) -> (seq, clientMsgId) of what was delivered to it, in arrival order."""
    joins: dict[tuple[str, str], list[tuple[str, int]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    """(client, room) -> ("join", the room's last seq then) or ("leave", 0), in order."""
    watermarks: dict[tuple[str, str], list[int]] = field(default_factory=lambda: defaultdict(list))

    # -- recording ------------------------------------------------------------------------

    def send(self, client: str, room: str, client_msg_id: str, at: float) -> None:
        """A send (the first attempt; a resend of the same id changes nothing)."""
        self.sends.setdefault(client_msg_id, _Send(client, room, at))

    def ack(self, client_msg_id: str, seq: int, at: float) -> None:
        entry = self.sends[client_msg_id]
        if entry.acked_seq is None:
            entry.acked_seq, entry.acked_at = seq, at
        elif entry.acked_seq != seq:  # a resend acked at another seq: record both
            entry.errors.append(f"re-acked at {seq} after {entry.acked_seq}")

    def error(self, client_msg_id: str, what: str, at: float) -> None:
        """An error code, or an unknown outcome (``timeout``, ``disconnected``)."""
        entry = self.sends[client_msg_id]
        entry.errors.append(what)
        entry.last_error_at = at

    def delivered(self, client: str, room: str, seq: int, client_msg_id: str) -> None:
        self.deliveries[(client, room)].append((seq, client_msg_id))

    def joined(self, client: str, room: str, last_seq: int) -> None:
        """``client`` joined ``room`` when its last message was ``last_seq``: it is owed
        every acknowledged message after it, for as long as it stays."""
        self.joins[(client, room)].append(("join", last_seq))

    def left(self, client: str, room: str) -> None:
        self.joins[(client, room)].append(("leave", 0))

    def watermark(self, client: str, room: str, read_seq: int) -> None:
        self.watermarks[(client, room)].append(read_seq)


@dataclass(frozen=True)
class Verdict:
    sent: int
    acked: int
    stored: int
    lost: int
    seq_changed: int
    duplicated: int
    gaps: int
    missed: int
    phantoms: int
    out_of_order: int
    redelivered: int
    watermark_back: int
    unacked_stored: int
    unacked_lost: int
    longest_stall_s: float
    examples: tuple[str, ...] = ()
    """A few of the faults found, to read in a failure."""

    @property
    def clean(self) -> bool:
        """Nothing acknowledged lost, doubled, reordered or missed."""
        return not (
            self.lost or self.seq_changed or self.duplicated or self.gaps or self.missed
            or self.phantoms or self.out_of_order or self.redelivered or self.watermark_back
        )  # fmt: skip

    def figures(self) -> dict[str, object]:
        """The counts, for docs/reliability.md (without the examples)."""
        out = asdict(self)
        out.pop("examples")
        return out


def check(history: History, stored: Iterable[Stored], *, until: float) -> Verdict:
    """Compare ``history`` with the ``stored`` rows of the rooms it used; ``until`` is when
    the scenario's last send ended (for the stall figure)."""
    rooms = {s.room for s in history.sends.values()}
    rows = [r for r in stored if r.room in rooms]
    examples: list[str] = []

    def note(text: str) -> None:
        if len(examples) < 10:
            examples.append(text)

    by_id: dict[str, list[Stored]] = defaultdict(list)
    seqs: dict[str, Counter[int]] = defaultdict(Counter)
    for row in rows:
        by_id[row.client_msg_id].append(row)
        seqs[row.room][row.seq] += 1

    duplicated = sum(len(v) - 1 for v in by_id.values() if len(v) > 1)
    duplicated += sum(n - 1 for room in seqs.values() for n in room.values() if n > 1)
    gaps = 0
    for room, counter in seqs.items():
        if sorted(counter) != list(range(1, max(counter) + 1)):
            gaps += 1
            note(f"room {room}: stored seqs are not 1..{max(counter)}")

    lost = seq_changed = unacked_stored = unacked_lost = 0
    for cmid, send in history.sends.items():
        found = by_id.get(cmid, [])
        if send.acked_seq is None:
            if found:
                unacked_stored += 1
            else:
                unacked_lost += 1
            continue
        if not found:
            lost += 1
            note(f"{cmid}: acked at seq {send.acked_seq} in {send.room}, not stored")
        elif all(r.seq != send.acked_seq for r in found):
            seq_changed += 1
            note(f"{cmid}: acked at seq {send.acked_seq}, stored at {[r.seq for r in found]}")

    out_of_order = redelivered = phantoms = 0
    for (client, room), got in history.deliveries.items():
        highest = 0
        seen: set[int] = set()
        for seq, cmid in got:
            if seq in seen:
                redelivered += 1
                note(f"{client} got seq {seq} of {room} twice")
            elif seq < highest:
                out_of_order += 1
                note(f"{client} got seq {seq} of {room} after {highest}")
            seen.add(seq)
            highest = max(highest, seq)
            if not any(r.room == room and r.seq == seq for r in by_id.get(cmid, ())):
                phantoms += 1
                note(f"{client} was shown {cmid} at seq {seq} of {room}: not stored so")

    missed = 0
    stored_seq = {cmid: rows_[0].seq for cmid, rows_ in by_id.items()}
    for (client, room), events in history.joins.items():
        if len(events) != 1:
            continue  # left (or rejoined): only members that stayed are owed everything
        after = events[0][1]
        received = {cmid for _, cmid in history.deliveries.get((client, room), [])}
        for cmid, send in history.sends.items():
            if send.room != room or send.acked_seq is None or cmid in received:
                continue
            if stored_seq.get(cmid, send.acked_seq) > after:
                missed += 1
                note(f"{client} missed acked {cmid} of {room}")

    watermark_back = 0
    for (client, room), marks in history.watermarks.items():
        for before, after in itertools.pairwise(marks):
            if after < before:
                watermark_back += 1
                note(f"{client}: watermark of {room} went from {before} to {after}")

    return Verdict(
        sent=len(history.sends),
        acked=sum(1 for s in history.sends.values() if s.acked_seq is not None),
        stored=len(rows),
        lost=lost,
        seq_changed=seq_changed,
        duplicated=duplicated,
        gaps=gaps,
        missed=missed,
        phantoms=phantoms,
        out_of_order=out_of_order,
        redelivered=redelivered,
        watermark_back=watermark_back,
        unacked_stored=unacked_stored,
        unacked_lost=unacked_lost,
        longest_stall_s=round(_longest_stall(history, until), 2),
        examples=tuple(examples),
    )


def _longest_stall(history: History, until: float) -> float:
    """The longest time with at least one send waiting and no send settling (acked, or
    given up after an error)."""
    events: list[tuple[float, int]] = []
    for send in history.sends.values():
        settled = send.settled_at
        events.append((send.sent_at, +1))
        events.append((settled if settled is not None else until, -1))
    events.sort()
    waiting, longest, progress = 0, 0.0, 0.0
    for at, change in events:
        if waiting > 0:
            longest = max(longest, at - progress)
        if change < 0 or waiting == 0:
            progress = at
        waiting += change
    return longest
