"""The chat state store's contract, written once: :class:`ChatStateStoreContract`, run on
every implementation by a subclass that provides its ``stores`` fixture
(``tests/unit/test_chat_state_store.py``: in memory; ``tests/integration/
test_chat_state_store.py``: on Postgres, a fresh migrated database per test).

The chat state lives beside the messages (a room's head is what unread counts are
arithmetic on), so the fixture gives a message store and a chat state store on the same
data."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from chat_common.changes import DELETE, EDIT, REACT
from chat_common.chatstate import InboxResponse, ReadMark, ReadState, UserEvent
from chat_common.errors import ErrorCode
from chat_common.schemas import ItemError, Message
from chat_history.statestore import ChatStateStore, CursorExpired
from chat_history.store import MessageStore, NewAppend, Stored
from tests.contracts.message_store import T0

__all__ = ["ChatStateStoreContract", "Stores"]

ANN, BOB, CAT = "user-ann", "user-bob", "user-cat"
_KEYS = itertools.count()


@dataclass
class Stores:
    """A message store and a chat state store on the same rooms; ``state_with`` makes
    another chat state store on them with other settings (its streams and listings are
    its own: a test that uses it uses only it)."""

    messages: MessageStore
    state: ChatStateStore
    state_with: Callable[..., ChatStateStore]


def _email(user: str) -> str:
    return f"{user}@example.com"


async def _send(
    stores: Stores,
    room: str,
    n: int = 1,
    *,
    sender: str = "a@example.com",
    at: timedelta = timedelta(),
) -> list[Message]:
    """``n`` new messages in ``room`` from ``sender`` (by default the email, as history
    takes it from a gateway without user ids: no member's user id), stored at ``T0 + at``."""
    keys = [f"k{next(_KEYS)}" for _ in range(n)]
    appends = [NewAppend(room, k, f"id-{room}-{k}", "a@example.com", f"text {k}", True, sender)
               for k in keys]  # fmt: skip
    found, _ = await stores.messages.append_batch(appends, T0 + at)
    return [found[(room, sender, k)] for k in keys]


async def _change(
    stores: Stores, room: str, user: str, kind: str, target: int, body: str = ""
) -> Stored:
    """A change by ``user`` (a member's user id) to the message at ``target``."""
    key = f"k{next(_KEYS)}"
    append = NewAppend(room, key, f"id-{room}-{key}", _email(user), body, True, user, kind, target)
    found, _ = await stores.messages.append_batch([append], T0)
    return found[append.key]


async def _join(state: ChatStateStore, user: str, room: str, at: timedelta = timedelta()) -> Any:
    return (await state.join(user, _email(user), room, now=T0 + at)).result


async def _mark(state: ChatStateStore, user: str, room: str, seq: int) -> ReadState:
    written = await state.mark_read(user, [ReadMark(room_id=room, seq=seq)], now=T0)
    (result,) = written.result.results
    assert result.state is not None, result.error
    return result.state


def _data(event: UserEvent) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(bytes(event.data))
    return data


async def _all_pages(state: ChatStateStore, user: str, limit: int) -> list[InboxResponse]:
    pages = [await state.inbox(user, after=None, limit=limit, now=T0)]
    while pages[-1].next is not None:
        pages.append(await state.inbox(user, after=pages[-1].next, limit=limit, now=T0))
    return pages


class ChatStateStoreContract:
    """Every test of the chat state store's contract. A subclass named ``Test...`` runs
    them and provides the ``stores`` fixture (:class:`Stores`, empty)."""

    # -- membership --

    async def test_the_first_member_owns_the_room(self, stores: Stores) -> None:
        """The first join of a room makes its owner, the next ones members, each starting
        at the room's head with nothing unread."""
        await _send(stores, "r", 3)
        ann = await _join(stores.state, ANN, "r")
        bob = await _join(stores.state, BOB, "r")
        assert (ann.role, ann.read_seq, ann.last_seq, ann.unread, ann.created) == (
            "owner", 3, 3, 0, True,
        )  # fmt: skip
        assert (bob.role, bob.read_seq, bob.created) == ("member", 3, True)
        fresh = await _join(stores.state, CAT, "new-room")
        assert (fresh.role, fresh.read_seq, fresh.last_seq) == ("owner", 0, 0)

    async def test_join_is_idempotent(self, stores: Stores) -> None:
        """Joining again answers the membership as it is (watermark, unread) with
        ``created: false`` and appends no event."""
        await _join(stores.state, ANN, "r")
        await _send(stores, "r", 4)
        await _mark(stores.state, ANN, "r", 1)
        again = await stores.state.join(ANN, _email(ANN), "r", now=T0)
        assert list(again.events) == []
        assert (again.result.role, again.result.read_seq, again.result.last_seq) == ("owner", 1, 4)
        assert (again.result.unread, again.result.created) == (3, False)
        assert (await stores.state.user_events(ANN, after_seq=0, limit=10)).last_seq == 2

    @pytest.mark.parametrize("messages", [0, 2], ids=["new-room", "room-with-messages"])
    async def test_concurrent_first_joins_make_exactly_one_owner(
        self, stores: Stores, messages: int
    ) -> None:
        """Many users joining a room without members at once (a new one, or one that has
        messages already): exactly one becomes the owner."""
        if messages:
            await _send(stores, "race", messages)
        users = [f"user-{i}" for i in range(12)]
        for _ in range(3):
            answers = await asyncio.gather(*(_join(stores.state, u, "race") for u in users))
            assert sorted(a.role for a in answers) == ["member"] * 11 + ["owner"]
            members = await stores.state.room_members("race", after=None, limit=100)
            assert [m.role for m in members.members].count("owner") == 1
            for user in users:
                await stores.state.leave(user, "race", now=T0)

    async def test_concurrent_joins_of_one_user_create_one_membership(self, stores: Stores) -> None:
        """The same join sent several times at once creates the membership once, with one
        event."""
        answers = await asyncio.gather(*(_join(stores.state, ANN, "r") for _ in range(5)))
        assert sorted(a.created for a in answers) == [False] * 4 + [True]
        events = await stores.state.user_events(ANN, after_seq=0, limit=10)
        assert [e.event for e in events.events] == ["membership"]

    async def test_leave_ends_the_membership_once(self, stores: Stores) -> None:
        """A leave removes the membership and tells the stream; a second one removes
        nothing and tells nothing; marks are then refused."""
        await _join(stores.state, ANN, "r")
        first = await stores.state.leave(ANN, "r", now=T0)
        second = await stores.state.leave(ANN, "r", now=T0)
        assert (first.result.removed, second.result.removed) == (True, False)
        assert [_data(e) for e in first.events] == [{"roomId": "r", "member": False}]
        assert list(second.events) == []
        marked = await stores.state.mark_read(ANN, [ReadMark(room_id="r", seq=0)], now=T0)
        assert marked.result.results[0].error is not None
        assert (await stores.state.room_members("r", after=None, limit=10)).count == 0

    async def test_an_owner_who_leaves_leaves_no_owner(self, stores: Stores) -> None:
        """When the owner leaves, the other members stay members (no transfer) and a new
        joiner is a member; a room left empty goes to its next joiner."""
        await _join(stores.state, ANN, "r")
        await _join(stores.state, BOB, "r")
        await stores.state.leave(ANN, "r", now=T0)
        cat = await _join(stores.state, CAT, "r")
        members = await stores.state.room_members("r", after=None, limit=10)
        assert cat.role == "member"
        assert [(m.user_id, m.role) for m in members.members] == [(BOB, "member"), (CAT, "member")]
        await stores.state.leave(BOB, "r", now=T0)
        await stores.state.leave(CAT, "r", now=T0)
        assert (await _join(stores.state, ANN, "r")).role == "owner"

    async def test_room_members_page_in_user_id_order(self, stores: Stores) -> None:
        """Members come in code point order of their user ids, page after page, with
        their email, role and watermark, and the room's count."""
        users = ["b", "B", "_x", "-y", "0", "a"]
        for user in users:
            await _join(stores.state, user, "r")
        first = await stores.state.room_members("r", after=None, limit=4)
        assert [m.user_id for m in first.members] == ["-y", "0", "B", "_x"]
        assert (first.count, first.next) == (6, "_x")
        rest = await stores.state.room_members("r", after=first.next, limit=4)
        assert [m.user_id for m in rest.members] == ["a", "b"]
        assert (rest.count, rest.next) == (6, None)
        assert (rest.members[1].email, rest.members[1].role) == ("b@example.com", "owner")
        empty = await stores.state.room_members("nobody-here", after=None, limit=4)
        assert (empty.members, empty.next, empty.count) == ([], None, 0)

    # -- read state --

    async def test_marks_move_forward_only(self, stores: Stores) -> None:
        """A mark moves the watermark forward; an older one leaves it as it is."""
        await _join(stores.state, ANN, "r")
        await _send(stores, "r", 5)
        assert await _mark(stores.state, ANN, "r", 3) == ReadState(
            room_id="r", read_seq=3, last_seq=5, unread=2
        )
        assert (await _mark(stores.state, ANN, "r", 1)).read_seq == 3
        assert (await _mark(stores.state, ANN, "r", 5)).unread == 0

    async def test_a_mark_beyond_the_head_moves_nothing(self, stores: Stores) -> None:
        """A mark past the room's last seq is not applied: the answer is the state as it
        was (its lastSeq below the mark says why), and no event is appended; once the
        room has grown that far, the same mark applies."""
        await _join(stores.state, ANN, "r")
        await _send(stores, "r", 3)
        assert (await _mark(stores.state, ANN, "r", 1)).read_seq == 1
        head = (await stores.state.user_events(ANN, after_seq=0, limit=10)).last_seq
        beyond = await stores.state.mark_read(ANN, [ReadMark(room_id="r", seq=4)], now=T0)
        assert beyond.result.results[0].state == ReadState(
            room_id="r", read_seq=1, last_seq=3, unread=2
        )
        assert list(beyond.events) == []
        assert (await stores.state.user_events(ANN, after_seq=0, limit=10)).last_seq == head
        await _send(stores, "r", 2)
        assert (await _mark(stores.state, ANN, "r", 100)).read_seq == 1
        assert (await _mark(stores.state, ANN, "r", 5)).read_seq == 5

    async def test_marks_answer_each_room_in_order(self, stores: Stores) -> None:
        """One request marks several rooms: each answered in order, a room the user is not
        a member of (or that does not exist) with NOT_MEMBER, the others applied."""
        for room in ("a", "b"):
            await _join(stores.state, ANN, room)
            await _send(stores, room, 4)
        await _join(stores.state, BOB, "foreign")
        marks = [ReadMark(room_id=r, seq=s) for r, s in [("b", 2), ("foreign", 1), ("a", 4),
                                                         ("nowhere", 1)]]  # fmt: skip
        written = await stores.state.mark_read(ANN, marks, now=T0)
        results = written.result.results
        outcomes = [(r.state.room_id if r.state else None, r.error.code if r.error else None)
                    for r in results]  # fmt: skip
        assert outcomes == [("b", None), (None, ErrorCode.NOT_MEMBER.value), ("a", None),
                            (None, ErrorCode.NOT_MEMBER.value)]  # fmt: skip
        assert [(_data(e)["roomId"], _data(e)["readSeq"]) for e in written.events] == [
            ("b", 2), ("a", 4),
        ]  # fmt: skip
        foreign = await stores.state.room_members("foreign", after=None, limit=10)
        assert [m.read_seq for m in foreign.members] == [0]

    async def test_a_mark_that_moves_nothing_appends_no_event(self, stores: Stores) -> None:
        """A mark at or below the watermark, or refused, leaves the stream as it was."""
        await _join(stores.state, ANN, "r")
        await _send(stores, "r", 2)
        await _mark(stores.state, ANN, "r", 2)
        head = (await stores.state.user_events(ANN, after_seq=0, limit=10)).last_seq
        again = await stores.state.mark_read(ANN, [ReadMark(room_id="r", seq=1)], now=T0)
        refused = await stores.state.mark_read(ANN, [ReadMark(room_id="x", seq=1)], now=T0)
        assert list(again.events) == list(refused.events) == []
        assert (await stores.state.user_events(ANN, after_seq=0, limit=10)).last_seq == head

    async def test_concurrent_marks_never_move_back(self, stores: Stores) -> None:
        """Marks at random seqs arriving at once leave the highest within the head (those
        beyond it are not applied); the read_state events, in stream order, only go
        forward and end there."""
        await _join(stores.state, ANN, "r")
        await _send(stores, "r", 30)
        seqs = random.Random(7).sample(range(1, 41), 20)
        highest = max(s for s in seqs if s <= 30)
        states = await asyncio.gather(*(_mark(stores.state, ANN, "r", s) for s in seqs))
        assert all(s.read_seq >= seq for s, seq in zip(states, seqs, strict=True) if seq <= 30)
        stream = await stores.state.user_events(ANN, after_seq=1, limit=100)
        read = [_data(e)["readSeq"] for e in stream.events]
        assert read == sorted(set(read)) and read[-1] == highest
        rooms = await stores.state.user_rooms(ANN, limit=10)
        assert [(r.read_seq, r.last_seq) for r in rooms.rooms] == [(highest, 30)]

    async def test_sending_reads_up_to_the_message(self, stores: Stores) -> None:
        """An append with a sender who is a member moves their watermark to it (without an
        event); other members' unread counts grow; a sender who is not a member (or the email
        standing in for a gateway without user ids) moves nothing."""
        await _join(stores.state, ANN, "r")
        await _join(stores.state, BOB, "r")
        await _send(stores, "r", 3, sender=BOB)
        await _send(stores, "r", 2, sender=ANN)
        await _send(stores, "r", 1, sender=CAT)
        await _send(stores, "r", 1)
        head = (await stores.state.user_events(ANN, after_seq=0, limit=10)).last_seq
        members = await stores.state.room_members("r", after=None, limit=10)
        assert [(m.user_id, m.read_seq) for m in members.members] == [(ANN, 5), (BOB, 3)]
        inbox = await stores.state.inbox(BOB, after=None, limit=10, now=T0)
        assert (inbox.rooms[0].read_seq, inbox.rooms[0].unread) == (3, 4)
        assert head == 1  # the join's event only

    async def test_an_older_send_never_moves_a_watermark_back(self, stores: Stores) -> None:
        """A sender who already read past their new message keeps their watermark."""
        await _join(stores.state, ANN, "r")
        await _send(stores, "r", 1, sender=ANN)
        await _mark(stores.state, ANN, "r", 1)
        await _send(stores, "r", 3)
        await _mark(stores.state, ANN, "r", 4)
        await _send(stores, "r", 1, sender=ANN)
        assert (await stores.state.user_rooms(ANN, limit=10)).rooms[0].read_seq == 5

    # -- the user stream --

    async def test_events_are_numbered_without_gaps_and_kept(self, stores: Stores) -> None:
        """Joins, marks and leaves number the user's events 1, 2, 3...; each write returns
        its events as they are then read back; another user's stream is its own."""
        written = [
            await stores.state.join(ANN, _email(ANN), "a", now=T0),
            await stores.state.join(ANN, _email(ANN), "b", now=T0),
        ]
        await _send(stores, "a", 2)
        written.append(await stores.state.mark_read(ANN, [ReadMark(room_id="a", seq=2)], now=T0))
        written.append(await stores.state.leave(ANN, "b", now=T0))
        await stores.state.join(BOB, _email(BOB), "a", now=T0)
        returned = [e for w in written for e in w.events]
        stream = await stores.state.user_events(ANN, after_seq=0, limit=100)
        assert [e.user_seq for e in returned] == [1, 2, 3, 4]
        assert stream.events == returned and (stream.last_seq, stream.complete) == (4, True)
        assert [e.event for e in returned] == ["membership", "membership", "read_state",
                                               "membership"]  # fmt: skip
        assert _data(returned[0]) == {"roomId": "a", "member": True, "role": "owner",
                                      "readSeq": 0, "lastSeq": 0}  # fmt: skip
        assert _data(returned[2]) == {"roomId": "a", "readSeq": 2, "lastSeq": 2, "unread": 0}
        assert (await stores.state.user_events(BOB, after_seq=0, limit=10)).last_seq == 1

    async def test_concurrent_writes_of_one_user_number_events_without_gaps(
        self, stores: Stores
    ) -> None:
        """Joins of many rooms at once by one user give events 1..n, one per room, each
        event the one its write returned."""
        rooms = [f"room-{i}" for i in range(15)]
        written = await asyncio.gather(
            *(stores.state.join(ANN, _email(ANN), r, now=T0) for r in rooms)
        )
        returned = sorted((e for w in written for e in w.events), key=lambda e: e.user_seq)
        stream = await stores.state.user_events(ANN, after_seq=0, limit=100)
        assert [e.user_seq for e in stream.events] == list(range(1, 16))
        assert stream.events == returned
        assert sorted(_data(e)["roomId"] for e in stream.events) == sorted(rooms)

    async def test_user_events_page_after_a_seq(self, stores: Stores) -> None:
        """Events come after ``after_seq``, at most ``limit``, with the head; nothing after
        the head is complete."""
        for i in range(5):
            await _join(stores.state, ANN, f"r{i}")
        page = await stores.state.user_events(ANN, after_seq=1, limit=2)
        assert [e.user_seq for e in page.events] == [2, 3]
        assert (page.last_seq, page.complete) == (5, True)
        end = await stores.state.user_events(ANN, after_seq=5, limit=2)
        assert (end.events, end.last_seq, end.complete) == ([], 5, True)
        nobody = await stores.state.user_events("nobody", after_seq=0, limit=2)
        assert (nobody.events, nobody.last_seq, nobody.complete) == ([], 0, True)

    async def test_old_events_are_pruned_and_reads_behind_them_incomplete(
        self, stores: Stores
    ) -> None:
        """Only the last ``events_kept`` events stay; a read from before them is
        incomplete (the caller re-reads the state), a read within them complete, and a
        read from beyond the head incomplete (another stream)."""
        state = stores.state_with(events_kept=3)
        for i in range(6):
            await _join(state, ANN, f"r{i}")
        behind = await state.user_events(ANN, after_seq=0, limit=10)
        assert [e.user_seq for e in behind.events] == [4, 5, 6]
        assert (behind.last_seq, behind.complete) == (6, False)
        assert (await state.user_events(ANN, after_seq=2, limit=10)).complete is False
        within = await state.user_events(ANN, after_seq=3, limit=10)
        assert ([e.user_seq for e in within.events], within.complete) == ([4, 5, 6], True)
        beyond = await state.user_events(ANN, after_seq=9, limit=10)
        assert (beyond.events, beyond.complete) == ([], False)

    async def test_user_rooms_lists_watermarks_heads_and_the_stream_head(
        self, stores: Stores
    ) -> None:
        """Every room of the user in room id order with watermark and head, the stream's
        head, and whether the list was cut at ``limit``."""
        for room in ("b", "a", "c"):
            await _join(stores.state, ANN, room)
        await _send(stores, "a", 3)
        await _mark(stores.state, ANN, "a", 2)
        full = await stores.state.user_rooms(ANN, limit=10)
        assert [(r.room_id, r.read_seq, r.last_seq) for r in full.rooms] == [
            ("a", 2, 3), ("b", 0, 0), ("c", 0, 0),
        ]  # fmt: skip
        assert (full.user_seq, full.truncated) == (4, False)
        cut = await stores.state.user_rooms(ANN, limit=2)
        assert ([r.room_id for r in cut.rooms], cut.truncated) == (["a", "b"], True)
        none = await stores.state.user_rooms("nobody", limit=2)
        assert (none.rooms, none.user_seq, none.truncated) == ([], 0, False)

    # -- the inbox --

    async def test_inbox_orders_by_last_activity(self, stores: Stores) -> None:
        """Rooms come most recently active first (a message, or the join for a room
        without a later one), ties by room id, each with its exact unread count, its last
        message and its activity's time."""
        minute = timedelta(minutes=1)
        await _join(stores.state, ANN, "quiet", at=minute * 5)
        await _join(stores.state, ANN, "busy", at=minute)
        await _join(stores.state, ANN, "tie-b", at=minute * 2)
        await _join(stores.state, ANN, "tie-a", at=minute * 2)
        await _join(stores.state, ANN, "old-news")
        await _send(stores, "old-news", 2)  # at T0: no later than the join
        sent = await _send(stores, "busy", 3, at=minute * 9)
        inbox = await stores.state.inbox(ANN, after=None, limit=10, now=T0)
        assert [r.room_id for r in inbox.rooms] == ["busy", "quiet", "tie-a", "tie-b", "old-news"]
        busy = inbox.rooms[0]
        assert (busy.role, busy.read_seq, busy.last_seq, busy.unread) == ("owner", 0, 3, 3)
        assert busy.last_message == sent[-1]
        assert busy.last_activity == sent[-1].ts == "2026-11-28T22:07:16.822Z"
        quiet = inbox.rooms[1]
        assert (quiet.last_message, quiet.last_activity) == (None, "2026-11-28T22:03:16.822Z")
        assert (inbox.next, inbox.total) == (None, 5)

    async def test_inbox_unread_is_exact_after_marks_and_sends(self, stores: Stores) -> None:
        """Each room's unread is its head minus the watermark as of the page, whatever
        marks and sends came before."""
        for room in ("a", "b"):
            await _join(stores.state, ANN, room)
        await _send(stores, "a", 7)
        await _send(stores, "b", 2, at=timedelta(seconds=1))
        await _mark(stores.state, ANN, "a", 4)
        await _send(stores, "b", 1, sender=ANN, at=timedelta(seconds=2))
        inbox = await stores.state.inbox(ANN, after=None, limit=10, now=T0)
        assert [(r.room_id, r.read_seq, r.last_seq, r.unread) for r in inbox.rooms] == [
            ("b", 3, 3, 0), ("a", 4, 7, 3),
        ]  # fmt: skip

    async def test_unread_counts_messages_others_sent_and_nobody_deleted(
        self, stores: Stores
    ) -> None:
        """Changes are not unread, and a deleted unread message no longer counts: the join
        answer, a mark's state, user_rooms and the inbox all say so; the inbox's last message
        is the newest message as it is now, not a change."""
        await _join(stores.state, ANN, "a")
        await _join(stores.state, BOB, "a")
        sent = await _send(stores, "a", 4, sender=BOB)
        await _change(stores, "a", BOB, EDIT, sent[3].seq, "edited")
        await _change(stores, "a", ANN, REACT, sent[0].seq, "👍")
        await _change(stores, "a", BOB, DELETE, sent[1].seq)
        joined = (await stores.state.join(ANN, _email(ANN), "a", now=T0)).result
        assert (joined.last_seq, joined.read_seq, joined.unread) == (7, 0, 3)
        rooms = await stores.state.user_rooms(ANN, limit=10)
        assert [(r.last_seq, r.unread) for r in rooms.rooms] == [(7, 3)]
        inbox = await stores.state.inbox(ANN, after=None, limit=10, now=T0)
        (room,) = inbox.rooms
        assert room.unread == 3 and room.last_message is not None
        assert (room.last_message.seq, room.last_message.text) == (4, "edited")
        assert room.last_message.edited_at is not None
        state = await _mark(stores.state, ANN, "a", 1)
        assert (state.read_seq, state.unread) == (1, 2)

    async def test_an_owner_deletes_any_message_a_member_only_their_own(
        self, stores: Stores
    ) -> None:
        """The room's owner (its first member) may delete another's message; a member may
        not."""
        await _join(stores.state, ANN, "a")  # the owner
        await _join(stores.state, BOB, "a")
        ann, bob = (
            (await _send(stores, "a", 1, sender=ANN))[0],
            (await _send(stores, "a", 1, sender=BOB))[0],
        )
        refused = await _change(stores, "a", BOB, DELETE, ann.seq)
        assert isinstance(refused, ItemError) and refused.code == "FORBIDDEN"
        deleted = await _change(stores, "a", ANN, DELETE, bob.seq)
        assert isinstance(deleted, Message) and deleted.email == _email(ANN)

    async def test_inbox_pages_skip_nothing_while_messages_arrive(self, stores: Stores) -> None:
        """120 rooms in pages of 50, with messages landing between the pages in rooms of
        every page (which reorders activity): every room comes exactly once, later pages
        in the first page's order, each room as it is when its page is read."""
        rooms = [f"room-{i:03d}" for i in range(120)]
        for i, room in enumerate(rooms):
            await _join(stores.state, ANN, room, at=timedelta(seconds=i))
        first = await stores.state.inbox(ANN, after=None, limit=50, now=T0)
        assert (first.total, len(first.rooms)) == (120, 50)
        assert [r.room_id for r in first.rooms] == rooms[::-1][:50]
        seen = [r.room_id for r in first.rooms]
        after, minute = first.next, 10
        while after is not None:
            for room in (rooms[0], rooms[60], rooms[119]):  # last, middle and first pages
                await _send(stores, room, 1, at=timedelta(minutes=minute))
                minute += 1
            page = await stores.state.inbox(ANN, after=after, limit=50, now=T0)
            assert page.total == 120
            seen += [r.room_id for r in page.rooms]
            if rooms[0] in [r.room_id for r in page.rooms]:
                last = next(r for r in page.rooms if r.room_id == rooms[0])
                assert last.last_seq == 2 and last.unread == 2
            after = page.next
        assert seen == rooms[::-1]

    async def test_inbox_pages_leave_out_rooms_left_since(self, stores: Stores) -> None:
        """A room left after the first page is not on a later page; the total is still
        the listing's."""
        for i in range(5):
            await _join(stores.state, ANN, f"r{i}", at=timedelta(seconds=i))
        first = await stores.state.inbox(ANN, after=None, limit=2, now=T0)
        await stores.state.leave(ANN, "r1", now=T0)
        rest = await stores.state.inbox(ANN, after=first.next, limit=2, now=T0)
        assert [r.room_id for r in rest.rooms] == ["r2"]
        assert rest.total == 5 and rest.next is not None

    async def test_inbox_small_enough_for_one_page_has_no_cursor(self, stores: Stores) -> None:
        """A listing that fits its first page has no next page; one with exactly one
        more room has a second page of one."""
        for i in range(3):
            await _join(stores.state, ANN, f"r{i}")
        assert (await stores.state.inbox(ANN, after=None, limit=3, now=T0)).next is None
        pages = await _all_pages(stores.state, ANN, 2)
        assert [len(p.rooms) for p in pages] == [2, 1]
        none = await stores.state.inbox("nobody", after=None, limit=3, now=T0)
        assert (none.rooms, none.next, none.total) == ([], None, 0)

    @pytest.mark.parametrize(
        "cursor",
        [
            "",
            "nonsense",
            "abc:1",
            ":3",
            "x:-1",
            "x:1.5",
            "x:99999999999999",
            "\x00:1",
            "a\x00b:1",
            f"{'0' * 31}\x00:1",
            f"{'A' * 32}:1",
            f"{'0' * 32}:1\x00",
            "é:1",
        ],
    )
    async def test_a_cursor_that_is_not_one_is_expired(self, stores: Stores, cursor: str) -> None:
        """Malformed or unknown cursors are INVALID_ARGUMENT, "cursor expired"."""
        with pytest.raises(CursorExpired) as info:
            await stores.state.inbox(ANN, after=cursor, limit=2, now=T0)
        assert info.value.code is ErrorCode.INVALID_ARGUMENT
        assert info.value.message == "cursor expired: list again"

    async def test_a_cursor_expires_and_is_its_users_only(self, stores: Stores) -> None:
        """A cursor works until the listing lifetime has passed, and only for its user."""
        state = stores.state_with(listing_ttl=timedelta(minutes=10))
        for i in range(3):
            await _join(state, ANN, f"r{i}")
            await _join(state, BOB, f"r{i}")
        first = await state.inbox(ANN, after=None, limit=2, now=T0)
        assert first.next is not None
        almost = await state.inbox(ANN, after=first.next, limit=2, now=T0 + timedelta(minutes=9))
        assert len(almost.rooms) == 1
        with pytest.raises(CursorExpired):
            await state.inbox(ANN, after=first.next, limit=2, now=T0 + timedelta(minutes=10))
        with pytest.raises(CursorExpired):
            await state.inbox(BOB, after=first.next, limit=2, now=T0)

    async def test_expired_listings_are_dropped_by_new_ones(self, stores: Stores) -> None:
        """A listing made after another's lifetime drops it for good: going back in time
        does not revive it."""
        for i in range(3):
            await _join(stores.state, ANN, f"r{i}")
        old = await stores.state.inbox(ANN, after=None, limit=1, now=T0)
        await stores.state.inbox(ANN, after=None, limit=1, now=T0 + timedelta(hours=1))
        assert old.next is not None
        with pytest.raises(CursorExpired):
            await stores.state.inbox(ANN, after=old.next, limit=1, now=T0)
