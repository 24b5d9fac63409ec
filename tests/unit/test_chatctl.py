"""chatctl's pure parts: discovery replies to rows, tables, expiry text, history paging,
the chat state's paging and members beside presence, and the gateway's drain batches."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from rich.console import Console
from rich.table import Table

from chat_common.chatstate import (
    InboxRequest,
    InboxResponse,
    InboxRoom,
    RoomMember,
    RoomMembersRequest,
    RoomMembersResponse,
)
from chat_common.schemas import (
    FetchRequest,
    FetchResponse,
    Message,
    PresenceRequest,
    PresenceResponse,
    PresentUser,
    SessionInfo,
)
from chat_ctl.history import last_messages, message_changes, replay
from chat_ctl.state import present_users, room_members, roster, user_rooms
from chat_ctl.view import (
    changes_table,
    describe_expiry,
    instance_table,
    instances_from_stats,
    messages_table,
    presence_table,
    roster_table,
    session_table,
    user_rooms_table,
)
from chat_gateway.drain import batch_sizes


def _stats(
    name: str, instance: str, service_id: str, *, accepting: bool | None = True
) -> dict[str, Any]:
    data: dict[str, Any] = {"requests": 4, "errors": 1, "averageMs": 2.5}
    if accepting is not None:
        data["accepting"] = accepting
    return {
        "name": name,
        "id": service_id,
        "version": "0.1.0",
        "started": "2026-01-01T00:00:00.000Z",
        "metadata": {"instance": instance},
        "endpoints": [
            {"name": "fetch", "subject": f"chat.{name}.fetch", "num_requests": 9, "data": data}
        ],
    }


def _render(table: Table) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(table)
    return " ".join(console.export_text().split())


def test_instances_are_deduplicated_and_sorted() -> None:
    """One instance per service id, ordered by service then instance name."""
    replies = [
        _stats("session", "session-2", "b"),
        _stats("gateway", "gateway-1", "c", accepting=False),
        _stats("session", "session-1", "a"),
        _stats("session", "session-2", "b"),
    ]
    found = instances_from_stats(replies)
    assert [(i.service, i.instance, i.accepting) for i in found] == [
        ("gateway", "gateway-1", False),
        ("session", "session-1", True),
        ("session", "session-2", True),
    ]


def test_endpoint_counts_come_from_the_service_data_when_present() -> None:
    """Our services' own counters win over nats.micro's (which only see the handoff)."""
    [ours] = instances_from_stats([_stats("history", "history-1", "x")])
    assert (ours.endpoints[0].requests, ours.endpoints[0].errors) == (4, 1)
    foreign = {
        "name": "other",
        "id": "y",
        "endpoints": [
            {"name": "e", "num_requests": 7, "num_errors": 2, "average_processing_time": 3_000_000}
        ],
    }
    [theirs] = instances_from_stats([foreign])
    endpoint = theirs.endpoints[0]
    assert (endpoint.requests, endpoint.errors, endpoint.average_ms, theirs.accepting) == (
        7,
        2,
        3.0,
        None,
    )


def test_instance_table_lists_every_instance() -> None:
    """Every instance appears, with its readiness in words."""
    text = _render(
        instance_table(
            instances_from_stats(
                [
                    _stats("gateway", "gateway-1", "c", accepting=False),
                    _stats("session", "s-1", "a"),
                ]
            )
        )
    )
    assert "2 instance(s)" in text
    assert "gateway-1" in text and "s-1" in text
    assert " no " in text and " yes " in text


@pytest.mark.parametrize(
    ("expires", "now", "text"),
    [
        (61_000, 1_000, "in 60s (1970-01-01T00:01:01Z)"),
        (1_000, 4_000, "overdue by 3s (1970-01-01T00:00:01Z)"),
        (None, 0, "unknown"),
    ],
)
def test_describe_expiry(expires: int | None, now: int, text: str) -> None:
    """Expiry reads as time left (or overdue) and the UTC moment."""
    assert describe_expiry(expires, now_ms=now) == text


def test_session_table_shows_state_and_never_reads_markup() -> None:
    """Attached sessions name their gateway; user text is printed literally."""
    info = SessionInfo(
        session_id="s1",
        email="[bold]eve@example.com",
        sid="abc",
        state="attached",
        gateway="gateway-2",
        rooms={"lobby": 4},
        expires_at_ms=10_000,
    )
    text = _render(session_table(info, now_ms=0))
    assert "attached to gateway-2" in text
    assert "[bold]eve@example.com" in text
    assert "lobby (joined at seq 4)" in text


def test_presence_table_says_how_many_are_not_shown() -> None:
    """A presence list cut by --limit says so."""
    presence = PresenceResponse(
        room_id="lobby", users=[PresentUser(email="a@x.io", sessions=["s1", "s2"])], total=3
    )
    assert "lobby: 3 user(s), 2 not shown" in _render(presence_table(presence))


def _message(seq: int) -> Message:
    return Message(
        id=f"m{seq}",
        room_id="r",
        seq=seq,
        email="a@x.io",
        text=f"[i]{seq}",
        ts="2026-01-01T00:00:00.000Z",
        client_msg_id=None,
    )


def test_messages_table_prints_text_literally() -> None:
    """Message text with rich markup in it is shown as typed."""
    assert "[i]7" in _render(messages_table("r", [_message(7)], last_seq=7))


class Room:
    """A room's stored messages answering FetchRequests as the history service does."""

    def __init__(self, count: int) -> None:
        self.messages = [_message(seq) for seq in range(1, count + 1)]
        self.requests: list[FetchRequest] = []

    async def fetch(self, req: FetchRequest) -> FetchResponse:
        self.requests.append(req)
        if req.after_seq is not None:
            page = [m for m in self.messages if m.seq > req.after_seq][: req.limit]
        else:
            before = [m for m in self.messages if req.before_seq is None or m.seq < req.before_seq]
            page = before[-req.limit :]
        head = self.messages[-1].seq if self.messages else 0
        return FetchResponse(messages=page, last_seq=head)


async def _replayed(room: Room, page: int, *, grow: int = 0) -> list[int]:
    seqs: list[int] = []
    async for _head, batch in replay(room.fetch, "r", page=page):
        seqs.extend(m.seq for m in batch)
        for _ in range(grow):
            room.messages.append(_message(room.messages[-1].seq + 1))
    return seqs


@pytest.mark.parametrize(("count", "page"), [(0, 2), (1, 2), (5, 2), (6, 2), (5, 50)])
def test_replay_returns_every_message_once_in_order(count: int, page: int) -> None:
    """Export pages cover seq 1..head exactly once, in order."""
    assert asyncio.run(_replayed(Room(count), page)) == list(range(1, count + 1))


def test_replay_stops_at_the_head_it_started_with() -> None:
    """Messages sent during an export are not included (the export has a fixed end)."""
    room = Room(5)
    assert asyncio.run(_replayed(room, 2, grow=3)) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(("count", "want", "page"), [(10, 3, 2), (10, 20, 4), (0, 5, 5)])
def test_last_messages(count: int, want: int, page: int) -> None:
    """The newest ``want`` messages, ascending, whatever the page size."""
    room = Room(count)
    messages, head = asyncio.run(last_messages(room.fetch, "r", count=want, page=page))
    assert [m.seq for m in messages] == list(range(max(1, count - want + 1), count + 1))
    assert head == count
    assert all(r.limit <= page for r in room.requests)


@pytest.mark.parametrize(
    ("count", "period", "sizes"),
    [
        (0, 10.0, []),
        (5, 0.0, [5]),
        (5, 10.0, [1, 1, 1, 1, 1]),
        (7, 0.3, [3, 2, 2]),
        (1000, 10.0, [10] * 100),
    ],
)
def test_drain_batches(count: int, period: float, sizes: list[int]) -> None:
    """Closes are spread one batch per tick at most, sizes within one of each other."""
    assert batch_sizes(count, period_s=period) == sizes


def _inbox_room(n: int) -> InboxRoom:
    return InboxRoom(
        room_id=f"r{n}",
        role="owner" if n % 2 else "member",
        last_seq=n + 3,
        read_seq=n,
        unread=3,
        last_message=None,
        last_activity="2026-01-01T00:00:00.000Z",
    )


class Inbox:
    """A user's rooms answering InboxRequests as history does: offset cursors into one
    listing, ``total`` on every page."""

    def __init__(self, count: int) -> None:
        self.rooms = [_inbox_room(n) for n in range(count)]
        self.requests: list[InboxRequest] = []

    async def inbox(self, req: InboxRequest) -> InboxResponse:
        self.requests.append(req)
        start = int(req.after or 0)
        end = start + req.limit
        more = end < len(self.rooms)
        return InboxResponse(
            rooms=self.rooms[start:end], next=str(end) if more else None, total=len(self.rooms)
        )


@pytest.mark.parametrize(
    ("count", "limit", "page", "requests"),
    [(0, 100, 200, 1), (5, 100, 2, 3), (6, 100, 2, 3), (250, 100, 200, 1), (250, 1000, 200, 2)],
)
def test_user_rooms_pages_through_one_listing(
    count: int, limit: int, page: int, requests: int
) -> None:
    """Every room once, in the listing's order, up to --limit, in pages of at most the
    service's largest; the total is the listing's, however many were read."""
    inbox = Inbox(count)
    found = asyncio.run(user_rooms(inbox.inbox, "ann@x.io", limit=limit, page=page))
    assert [r.room_id for r in found.rooms] == [f"r{n}" for n in range(min(count, limit))]
    assert (found.user_id, found.total) == ("ann@x.io", count)
    assert len(inbox.requests) == requests
    assert all(r.limit <= page and r.user_id == "ann@x.io" for r in inbox.requests)
    assert inbox.requests[-1].limit <= limit - page * (requests - 1)


def test_room_members_and_presence_page_with_their_own_cursors() -> None:
    """Members page by a string cursor, presence by an integer one; both stop at --limit
    and report the whole count."""
    everyone = [RoomMember(user_id=f"u{n}", email=f"u{n}@x.io", role="member", read_seq=n)
                for n in range(7)]  # fmt: skip
    present = [PresentUser(email=f"u{n}@x.io", sessions=[f"s{n}"]) for n in range(7)]

    async def members(req: RoomMembersRequest) -> RoomMembersResponse:
        start = int(req.after or 0)
        end = start + req.limit
        return RoomMembersResponse(
            members=everyone[start:end], next=str(end) if end < 7 else None, count=7
        )

    async def presence(req: PresenceRequest) -> PresenceResponse:
        start = req.after or 0
        end = start + req.limit
        return PresenceResponse(
            room_id=req.room_id, users=present[start:end], total=7, next=end if end < 7 else None
        )

    found, count = asyncio.run(room_members(members, "lobby", limit=5, page=2))
    assert ([m.user_id for m in found], count) == ([f"u{n}" for n in range(5)], 7)
    users, total = asyncio.run(present_users(presence, "lobby", limit=100, page=3))
    assert ([u.email for u in users], total) == ([u.email for u in present], 7)


def _member(user_id: str, email: str, read_seq: int) -> RoomMember:
    return RoomMember(user_id=user_id, email=email, role="member", read_seq=read_seq)


def test_roster_matches_presence_by_email_and_lists_present_non_members() -> None:
    """A member's sessions come from presence by email, unread from the room's last seq;
    a user present without being a member is listed after the members."""
    members = [_member("sub-1", "ann@x.io", 10), _member("sub-2", "bob@x.io", 12)]
    present = [
        PresentUser(email="eve@x.io", sessions=["s3"]),
        PresentUser(email="ann@x.io", sessions=["s1", "s2"]),
    ]
    shown = roster("lobby", members, 2, present, 2, last_seq=12)
    assert [(r.user_id, r.email, r.unread, r.sessions) for r in shown.members] == [
        ("sub-1", "ann@x.io", 2, ["s1", "s2"]),
        ("sub-2", "bob@x.io", 0, []),
        (None, "eve@x.io", None, ["s3"]),
    ]
    assert shown.presence_complete
    text = _render(roster_table(shown))
    assert "lobby: 2 member(s); 2 present; last seq 12" in text
    assert "│ - │ eve@x.io │ not a member │ - │ - │ s3 │" in text
    assert "│ sub-1 │ ann@x.io │ member │ 10 │ 2 │ s1 │" in text


def test_roster_cut_by_limit_claims_nobody_is_not_a_member() -> None:
    """With members not listed (--limit), a present user may be one of them: not listed as
    a non-member; the title says how many members are not shown."""
    members = [_member("[b]ann", "[b]ann@x.io", 1)]
    present = [PresentUser(email="bob@x.io", sessions=["s1"])]
    shown = roster("lobby", members, 3, present, 5, last_seq=1)
    assert [r.email for r in shown.members] == ["[b]ann@x.io"]
    assert not shown.presence_complete
    text = _render(roster_table(shown))
    assert "3 member(s), 2 not shown (raise --limit)" in text
    assert "sessions shown for the first ones only" in text
    assert "[b]ann@x.io" in text and "[b]ann " in text


def test_user_rooms_table_shows_read_state_and_what_was_cut() -> None:
    """Each room with its role and numbers; a list cut by --limit says so."""
    inbox = Inbox(4)
    found = asyncio.run(user_rooms(inbox.inbox, "[i]ann@x.io", limit=3))
    text = _render(user_rooms_table(found))
    assert "[i]ann@x.io: 4 room(s), 1 not shown (raise --limit)" in text
    assert "│ r1 │ owner │ 1 │ 4 │ 3 │" in text


def test_message_changes_pages_through_every_change_in_order() -> None:
    """A message's changes come whole and in seq order whatever the page size; another
    message's changes are not among them."""
    from chat_history.memorystore import InMemoryMessageStore
    from chat_history.store import NewAppend
    from tests.contracts.message_store import T0

    store = InMemoryMessageStore()
    appends = [NewAppend("r", f"m{i}", f"id{i}", "a@x.example", "hi", True, "a") for i in (1, 2)]
    appends += [NewAppend("r", f"e{i}", f"ide{i}", "a@x.example", f"v{i}", True, "a", "edit", 1 + i % 2)
                for i in range(7)]  # fmt: skip
    asyncio.run(store.append_batch(appends, T0))

    async def fetch(req: FetchRequest) -> FetchResponse:
        assert req.target is not None
        found, head = await store.changes(req.room_id, req.target, after_seq=req.after_seq or 0,
                                          limit=req.limit)  # fmt: skip
        return FetchResponse(messages=found, last_seq=head)

    found = asyncio.run(message_changes(fetch, "r", 1, page=2))
    assert [(m.seq, m.text) for m in found] == [(3, "v0"), (5, "v2"), (7, "v4"), (9, "v6")]
    table = _render(changes_table(None, found, target=1))
    assert "v6" in table and "no message" in table
