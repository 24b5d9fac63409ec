"""The chat state endpoints (``chat.history.member_join`` ...) as the gateway calls them:
the real handlers on the in-memory stores behind the error boundary of their NATS
endpoints (tests/support/inprocess.py), user events on the user's subject after commit."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chat_common.chatstate import MAX_MARKS
from chat_common.errors import ChatError, ErrorCode
from chat_common.schemas import encode
from chat_common.subjects import history_endpoint, user_events
from chat_history.memorystate import InMemoryChatStateStore
from chat_history.memorystore import InMemoryMessageStore
from chat_history.statehandlers import ChatStateHandlers
from tests.support.inprocess import InProcessServices, MemoryBus

ANN = "user-ann"


@contextlib.asynccontextmanager
async def services() -> AsyncIterator[tuple[InProcessServices, MemoryBus]]:
    """The services on a memory bus, with history's commit loop running."""
    bus = MemoryBus()
    services = InProcessServices(bus)
    task = asyncio.create_task(services.writer.run())
    try:
        yield services, bus
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _call(services: InProcessServices, endpoint: str, body: dict[str, Any]) -> Any:
    reply = await services.request(history_endpoint(endpoint), encode(body))
    return json.loads(reply)


async def _refused(services: InProcessServices, endpoint: str, body: dict[str, Any]) -> ChatError:
    with pytest.raises(ChatError) as info:
        await _call(services, endpoint, body)
    return info.value


def _events(bus: MemoryBus, user_id: str) -> list[dict[str, Any]]:
    return [json.loads(p) for s, p in bus.published if s == user_events(user_id)]


async def test_a_join_answers_and_publishes_its_event_on_the_users_subject() -> None:
    """``member_join`` answers the membership and publishes the ``membership`` event on the
    user's subject as a UserEvent; joining again publishes nothing."""
    async with services() as (chat, bus):
        body = {"userId": ANN, "email": "ann@example.com", "roomId": "lobby"}
        joined = await _call(chat, "member_join", body)
        again = await _call(chat, "member_join", body)
    assert joined == {"role": "owner", "readSeq": 0, "lastSeq": 0, "unread": 0, "created": True}
    assert again["created"] is False
    assert _events(bus, ANN) == [
        {"userSeq": 1, "event": "membership",
         "data": {"roomId": "lobby", "member": True, "role": "owner", "readSeq": 0,
                  "lastSeq": 0}},
    ]  # fmt: skip


async def test_sending_marks_and_the_inbox_agree() -> None:
    """A message appended with its sender is read by the sender and unread by the others;
    a mark moves the reader's watermark and publishes a ``read_state`` event; the inbox
    and user_rooms tell the same counts."""
    async with services() as (chat, bus):
        for user in (ANN, "user-bob"):
            body = {"userId": user, "email": f"{user}@example.com", "roomId": "lobby"}
            await _call(chat, "member_join", body)
        for n in range(3):
            await _call(chat, "append", {"roomId": "lobby", "email": "ann@example.com",
                                         "text": f"m{n}", "clientMsgId": f"c{n}",
                                         "sender": ANN})  # fmt: skip
        bob = await _call(chat, "inbox", {"userId": "user-bob"})
        ann = await _call(chat, "user_rooms", {"userId": ANN})
        marked = await _call(chat, "mark_read",
                             {"userId": "user-bob", "marks": [{"roomId": "lobby", "seq": 2},
                                                              {"roomId": "den", "seq": 1}]})  # fmt: skip
    assert (bob["rooms"][0]["unread"], bob["rooms"][0]["lastMessage"]["text"]) == (3, "m2")
    assert ann == {"rooms": [{"roomId": "lobby", "readSeq": 3, "lastSeq": 3, "unread": 0}], "userSeq": 1,
                   "truncated": False}  # fmt: skip
    assert marked["results"] == [
        {"state": {"roomId": "lobby", "readSeq": 2, "lastSeq": 3, "unread": 1}, "error": None},
        {"state": None, "error": {"code": "NOT_MEMBER", "message": "not a member of the room"}},
    ]
    assert [e["event"] for e in _events(bus, "user-bob")] == ["membership", "read_state"]
    assert _events(bus, ANN)[-1]["event"] == "membership"  # sending published no event


async def test_user_events_and_room_members_answer_what_the_store_keeps() -> None:
    """``user_events`` replays the events published, ``room_members`` lists the members."""
    async with services() as (chat, bus):
        for room in ("a", "b"):
            await _call(chat, "member_join", {"userId": ANN, "email": "ann@example.com",
                                              "roomId": room})  # fmt: skip
        await _call(chat, "member_leave", {"userId": ANN, "roomId": "b"})
        replay = await _call(chat, "user_events", {"userId": ANN, "afterSeq": 1})
        members = await _call(chat, "room_members", {"roomId": "a"})
    assert replay["events"] == _events(bus, ANN)[1:]
    assert (replay["lastSeq"], replay["complete"]) == (3, True)
    assert members == {"members": [{"userId": ANN, "email": "ann@example.com", "role": "owner",
                                    "readSeq": 0}], "next": None, "count": 1}  # fmt: skip


@pytest.mark.parametrize(
    "endpoint, body, message",
    [
        ("mark_read", {"userId": ANN, "marks": []}, f"marks must be 1..{MAX_MARKS}"),
        ("mark_read", {"userId": ANN, "marks": [{"roomId": f"r{i}", "seq": 1}
                                                 for i in range(MAX_MARKS + 1)]},
         f"marks must be 1..{MAX_MARKS}"),
        ("mark_read", {"userId": ANN, "marks": [{"roomId": "r", "seq": 1},
                                                 {"roomId": "r", "seq": 2}]},
         "marks must name distinct rooms"),
        ("inbox", {"userId": ANN, "limit": 0}, "limit must be 1..200"),
        ("inbox", {"userId": ANN, "limit": 201}, "limit must be 1..200"),
        ("inbox", {"userId": ANN, "after": "nope"}, "cursor expired: list again"),
        ("user_events", {"userId": ANN, "afterSeq": 0, "limit": 1001}, "limit must be 1..1000"),
        ("user_events", {"userId": ANN, "afterSeq": 0, "limit": 0}, "limit must be 1..1000"),
        ("room_members", {"roomId": "r", "limit": 1001}, "limit must be 1..1000"),
        ("user_rooms", {"userId": ANN, "limit": 0}, "limit must be 1..10000"),
        ("member_join", {"userId": "a\x00b", "email": "a@example.com", "roomId": "r"}, None),
        ("member_join", {"userId": ANN, "email": "a@example.com", "roomId": "a.b"}, None),
        ("append", {"roomId": "r", "email": "a@example.com", "text": "hi",
                    "clientMsgId": "c", "sender": "a\nb"}, "sender is not a user id"),
    ],
)  # fmt: skip
async def test_requests_out_of_range_are_invalid(
    endpoint: str, body: dict[str, Any], message: str | None
) -> None:
    """Marks (1..MAX_MARKS, distinct rooms), limits, cursors, user ids, room ids and
    senders out of range are INVALID_ARGUMENT, and change nothing."""
    async with services() as (chat, bus):
        error = await _refused(chat, endpoint, body)
    assert error.code is ErrorCode.INVALID_ARGUMENT
    assert message is None or error.message == message
    assert bus.published == []


class FailingBus:
    """A bus connection whose every publish fails."""

    async def publish(
        self,
        subject: str,
        payload: bytes = b"",
        reply: str = "",
        headers: dict[str, str] | None = None,
    ) -> None:
        raise ConnectionError("nats: connection closed")


async def test_a_failed_publish_is_logged_and_the_request_succeeds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """When the user event cannot be published after the commit, the join still succeeds,
    the failure is logged by class only, and the event can be read back."""
    store = InMemoryChatStateStore(InMemoryMessageStore())
    handlers = ChatStateHandlers(store, FailingBus())
    body = encode({"userId": ANN, "email": "ann@example.com", "roomId": "lobby"})
    with caplog.at_level(logging.WARNING, logger="chat.history.state"):
        joined = json.loads(await handlers.member_join(body))
    assert joined["created"] is True
    (record,) = caplog.records
    assert (record.getMessage(), getattr(record, "error", None)) == (
        "user event publish failed after commit", "ConnectionError",
    )  # fmt: skip
    kept = await store.user_events(ANN, after_seq=0, limit=10)
    assert [e.user_seq for e in kept.events] == [1]


async def test_the_inbox_cursor_runs_on_the_handlers_clock() -> None:
    """An inbox cursor works through the endpoint until the listing's lifetime has passed
    on the handlers' clock, then is INVALID_ARGUMENT."""
    now = [datetime(2026, 12, 1, tzinfo=UTC)]
    store = InMemoryChatStateStore(InMemoryMessageStore())
    handlers = ChatStateHandlers(store, MemoryBus(), clock=lambda: now[0])
    for room in ("a", "b", "c"):
        await handlers.member_join(encode({"userId": ANN, "email": "a@example.com",
                                           "roomId": room}))  # fmt: skip
    first = json.loads(await handlers.inbox(encode({"userId": ANN, "limit": 2})))
    second = json.loads(await handlers.inbox(encode({"userId": ANN, "after": first["next"]})))
    now[0] += timedelta(minutes=10)
    with pytest.raises(ChatError) as info:
        await handlers.inbox(encode({"userId": ANN, "after": first["next"], "limit": 2}))
    assert [len(first["rooms"]), len(second["rooms"]), second["total"]] == [2, 1, 3]
    assert info.value.code is ErrorCode.INVALID_ARGUMENT
