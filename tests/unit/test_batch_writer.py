"""BatchWriter over the in-memory message store: group commit, idempotent retries, the
order of what it announces, and its handling of failing commits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import datetime

import msgspec
import pytest

from chat_common.errors import ChatError, ErrorCode, Unavailable
from chat_common.schemas import AppendRequest, Message, RoomMessages
from chat_common.subjects import room_events
from chat_history.fanout import publish_committed
from chat_history.memorystore import InMemoryMessageStore, MemoryMember
from chat_history.store import Key, MessageStore, NewAppend, StoreUnavailable
from chat_history.writer import BatchWriter, Committed
from tests.contracts.message_store import T0


class Announcements:
    """What the writer hands to ``on_committed``, one list per call, to be awaited."""

    def __init__(self) -> None:
        self.calls: asyncio.Queue[list[Committed]] = asyncio.Queue()

    async def __call__(self, committed: list[Committed]) -> None:
        self.calls.put_nowait(committed)

    async def next(self) -> list[Message]:
        async with asyncio.timeout(5):
            return [c.message for c in await self.calls.get()]


class FailingStore:
    """An in-memory store whose first ``transient`` batches fail with ``StoreUnavailable``
    (translated from an ``OSError``, as the Postgres store does) and whose batches holding
    a text starting with ``poison`` fail with a ``ValueError`` that quotes the text (as a
    database error quotes the failing row)."""

    def __init__(self, *, transient: int = 0) -> None:
        self.inner = InMemoryMessageStore()
        self.transient = transient
        self.calls = 0

    async def append_batch(
        self, appends: Sequence[NewAppend], created_at: datetime
    ) -> tuple[dict[Key, Message], int]:
        self.calls += 1
        if self.calls <= self.transient:
            raise StoreUnavailable() from OSError("connection reset")
        for _room, _key, _id, _email, body, *_ in appends:
            if body.startswith("poison"):
                raise ValueError(f"refused: {body}")
        return await self.inner.append_batch(appends, created_at)

    async def page(
        self,
        room_id: str,
        *,
        before_seq: int | None,
        after_seq: int | None,
        limit: int,
        replica_ok: bool = False,
    ) -> tuple[list[Message], int]:
        return await self.inner.page(
            room_id, before_seq=before_seq, after_seq=after_seq, limit=limit
        )


@contextlib.asynccontextmanager
async def running(
    store: MessageStore, *, attempts: int = 3
) -> AsyncIterator[tuple[BatchWriter, Announcements]]:
    """A writer over ``store``; its commit loop starts at the caller's first ``await``, so
    groups queued before that go into one batch."""
    announced = Announcements()
    writer = BatchWriter(
        store, batch_max=256, linger_s=0, attempts=attempts, on_committed=announced
    )
    task = asyncio.ensure_future(writer.run())
    try:
        yield writer, announced
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _req(
    room: str, key: str, text: str | None = None, *, sender: str | None = None
) -> tuple[AppendRequest, bool]:
    email = "a@example.com" if sender is None else f"{sender}@example.com"
    req = AppendRequest(room_id=room, email=email, text=text or f"text {key}", client_msg_id=key,
                        sender=sender)  # fmt: skip
    return req, True


def _message(raw: bytes) -> Message:
    return msgspec.json.decode(raw, type=Message)


async def test_a_group_commits_together_with_consecutive_seqs_in_its_order() -> None:
    """A group's appends commit in one batch, one announcement, with consecutive seqs in
    the group's order."""
    store = InMemoryMessageStore()
    async with running(store) as (writer, announced):
        futures = writer.append_group([_req("r", k) for k in ("c", "a", "d", "b")])
        messages = [_message(raw) for raw in await asyncio.gather(*futures)]
        assert [(m.client_msg_id, m.seq) for m in messages] == [
            ("c", 1), ("a", 2), ("d", 3), ("b", 4)
        ]  # fmt: skip
        assert await announced.next() == messages
        assert announced.calls.empty()
    assert (await store.page("r", before_seq=None, after_seq=None, limit=10))[0] == messages


async def test_a_retry_in_the_same_batch_resolves_to_the_original_announced_once() -> None:
    """A retry queued while its original is still waiting resolves to the same stored
    message, and the batch announces that message once."""
    store = InMemoryMessageStore()
    async with running(store) as (writer, announced):
        (original,) = writer.append_group([_req("r", "a", "first try")])
        (retry,) = writer.append_group([_req("r", "a", "second try")])
        assert await original == await retry
        message = _message(await original)
        assert (message.seq, message.text) == (1, "first try")
        assert await announced.next() == [message]
        assert announced.calls.empty()
    assert (await store.page("r", before_seq=None, after_seq=None, limit=10))[0] == [message]


async def test_two_senders_in_one_batch_with_one_client_msg_id_get_their_own() -> None:
    """Two senders' appends with the same clientMsgId in one batch are two messages, each
    answered with its own and announced once; the same sender's second one is a retry."""
    store = InMemoryMessageStore()
    async with running(store) as (writer, announced):
        futures = writer.append_group([_req("r", "c-1", "ann's", sender="ann"),
                                       _req("r", "c-1", "bob's", sender="bob")])  # fmt: skip
        futures += writer.append_group([_req("r", "c-1", "ann's retry", sender="ann")])
        ann, bob, retry = [_message(raw) for raw in await asyncio.gather(*futures)]
        assert [(m.seq, m.email, m.text) for m in (ann, bob)] == [
            (1, "ann@example.com", "ann's"), (2, "bob@example.com", "bob's")
        ]  # fmt: skip
        assert retry == ann
        assert await announced.next() == [ann, bob]
        assert announced.calls.empty()


async def test_an_append_without_sender_is_its_emails() -> None:
    """An append without a sender (a gateway that predates user ids) is keyed under its
    email: the same email's append with that email as its user id is a retry of it, another
    email's is another message."""
    store = InMemoryMessageStore()
    async with running(store) as (writer, _announced):
        anonymous = AppendRequest(room_id="r", email="ann@example.com", text="hi",
                                  client_msg_id="c-1")  # fmt: skip
        first = _message(await writer.append(anonymous, client_supplied=True))
        same = msgspec.structs.replace(anonymous, text="again", sender="ann@example.com")
        other = msgspec.structs.replace(anonymous, email="bob@example.com")
        assert _message(await writer.append(same, client_supplied=True)) == first
        assert _message(await writer.append(other, client_supplied=True)).seq == 2


async def test_a_retry_after_commit_resolves_to_the_original() -> None:
    """A retry of a committed append resolves to the stored message and stores nothing;
    its announcement repeats the stored message (same seq), which readers drop as a
    duplicate: that is how a publish lost after the commit gets repaired."""
    store = InMemoryMessageStore()
    async with running(store) as (writer, announced):
        first, _ = _req("r", "a", "first try")
        original = _message(await writer.append(first, client_supplied=True))
        assert await announced.next() == [original]
        second, _ = _req("r", "a", "second try")
        assert _message(await writer.append(second, client_supplied=True)) == original
        assert await announced.next() == [original]
    assert (await store.page("r", before_seq=None, after_seq=None, limit=10)) == ([original], 1)


async def test_on_committed_gets_messages_in_room_then_seq_order() -> None:
    """One batch of several groups and rooms is announced sorted by (room, seq)."""
    store = InMemoryMessageStore()
    async with running(store) as (writer, announced):
        futures = writer.append_group([_req("b", "1"), _req("a", "1"), _req("b", "2")])
        futures += writer.append_group([_req("c", "1"), _req("a", "2")])
        await asyncio.gather(*futures)
        messages = await announced.next()
    assert [(m.room_id, m.seq, m.client_msg_id) for m in messages] == [
        ("a", 1, "1"), ("a", 2, "2"), ("b", 1, "1"), ("b", 2, "2"), ("c", 1, "1")
    ]  # fmt: skip


async def test_a_transient_failure_is_retried() -> None:
    """A batch whose commit fails with a transient error is tried again and then commits."""
    store = FailingStore(transient=2)
    async with running(store) as (writer, announced):
        futures = writer.append_group([_req("r", "a"), _req("r", "b")])
        messages = [_message(raw) for raw in await asyncio.gather(*futures)]
        assert await announced.next() == messages
    assert [m.seq for m in messages] == [1, 2]
    assert store.calls == 3


async def test_a_batch_failing_every_attempt_fails_with_unavailable() -> None:
    """When every attempt fails with a transient error, each append fails UNAVAILABLE."""
    store = FailingStore(transient=2)
    async with running(store, attempts=2) as (writer, _announced):
        (future,) = writer.append_group([_req("r", "a")])
        with pytest.raises(Unavailable) as info:
            await future
    assert info.value.code is ErrorCode.UNAVAILABLE
    assert store.calls == 2


async def test_a_failing_append_fails_alone() -> None:
    """An append the store refuses for good fails INTERNAL; the others of its batch commit."""
    store = FailingStore()
    async with running(store) as (writer, _announced):
        ok1, bad, ok2 = writer.append_group(
            [_req("r", "a"), _req("r", "b", "poison"), _req("r", "c")]
        )
        assert [_message(await ok1).seq, _message(await ok2).seq] == [1, 2]
        with pytest.raises(ChatError) as info:
            await bad
    assert info.value.code is ErrorCode.INTERNAL


async def test_an_error_other_than_store_unavailable_is_not_retried() -> None:
    """Only ``StoreUnavailable`` is retried: an ``OSError`` that a store lets through is an
    error for good, tried once and failed INTERNAL."""

    class LeakyStore(FailingStore):
        async def append_batch(
            self, appends: Sequence[NewAppend], created_at: datetime
        ) -> tuple[dict[Key, Message], int]:
            self.calls += 1
            raise OSError("not translated")

    store = LeakyStore()
    async with running(store, attempts=3) as (writer, _announced):
        (future,) = writer.append_group([_req("r", "a")])
        with pytest.raises(ChatError) as info:
            await future
    assert info.value.code is ErrorCode.INTERNAL
    assert store.calls == 1


async def test_failures_are_logged_by_error_class_never_with_the_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A retried batch is logged with the class of the error the store translated, an
    append failing for good with its error's class; neither log quotes the message text."""
    store = FailingStore(transient=1)
    caplog.set_level(logging.INFO, logger="chat.history.writer")
    async with running(store) as (writer, _announced):
        ok, bad = writer.append_group([_req("r", "a"), _req("r", "b", "poison: secret words")])
        assert _message(await ok).seq == 1
        with pytest.raises(ChatError):
            await bad
    retried = [r for r in caplog.records if r.getMessage() == "batch commit failed"]
    failed = [r for r in caplog.records if r.getMessage() == "append failed for good"]
    assert [r.__dict__["error"] for r in retried] == ["OSError"]
    assert [r.__dict__["error"] for r in failed] == ["ValueError"]
    assert not [r for r in caplog.records if "secret words" in str(r.__dict__)]


async def test_the_sender_reaches_the_store_and_the_room_subject() -> None:
    """An append's sender is stored with it (its watermark moves to the message) and goes
    out with the message on the room's subject; an append without one goes out with its
    email as sender, as it was stored."""
    store = InMemoryMessageStore()
    store.room("r").members["user-a"] = MemoryMember("a@example.com", "owner", 0, T0)
    bus = RecordingPublisher()
    writer = BatchWriter(store, batch_max=256, linger_s=0, attempts=1,
                         on_committed=publish_committed(bus))  # fmt: skip
    task = asyncio.ensure_future(writer.run())
    try:
        mine = AppendRequest(room_id="r", email="a@example.com", text="hi", client_msg_id="m",
                             sender="user-a")  # fmt: skip
        futures = writer.append_group([(mine, True), _req("r", "anon")])
        await asyncio.gather(*futures)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert store.rooms["r"].members["user-a"].read_seq == 1
    ((subject, payload),) = bus.published
    sent = msgspec.json.decode(payload, type=RoomMessages).messages
    assert subject == room_events("r")
    assert [(m.seq, m.sender) for m in sent] == [(1, "user-a"), (2, "a@example.com")]


class RecordingPublisher:
    """A bus connection that records what is published."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    async def publish(
        self,
        subject: str,
        payload: bytes = b"",
        reply: str = "",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.published.append((subject, payload))
