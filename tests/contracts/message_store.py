"""The message store's contract, written once: :class:`MessageStoreContract`, run on every
implementation by a subclass that provides its ``store`` fixture
(``tests/unit/test_message_store.py``: in memory; ``tests/integration/test_message_store.py``:
on Postgres, a fresh migrated database per test)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from chat_common.schemas import Message
from chat_history.store import MessageStore, NewAppend

__all__ = ["T0", "MessageStoreContract"]

T0 = datetime(2026, 11, 28, 21, 58, 16, 822999, tzinfo=UTC)


def _new(room: str, key: str, *, body: str | None = None, sender: str = "user-a") -> NewAppend:
    """An append of ``sender`` (whose email is ``<sender>@example.com``)."""
    return NewAppend(room, key, f"id-{room}-{sender}-{key}", f"{sender}@example.com",
                     body or f"text {key}", True, sender)  # fmt: skip


async def _fill(store: MessageStore, room: str, n: int) -> list[Message]:
    appends = [_new(room, f"k{i}") for i in range(1, n + 1)]
    found, _ = await store.append_batch(appends, T0)
    return [found[(room, "user-a", f"k{i}")] for i in range(1, n + 1)]


async def _seqs(
    store: MessageStore,
    room: str,
    *,
    before_seq: int | None = None,
    after_seq: int | None = None,
    limit: int,
) -> tuple[list[int], int]:
    messages, head = await store.page(room, before_seq=before_seq, after_seq=after_seq, limit=limit)
    return [m.seq for m in messages], head


class MessageStoreContract:
    """Every test of the message store's contract. A subclass named ``Test...`` runs them
    and provides the ``store`` fixture: an empty :class:`MessageStore` of its kind."""

    async def test_appends_get_gap_free_seqs_in_the_order_given(self, store: MessageStore) -> None:
        """A room's new messages are numbered from 1, without gaps, in the order given, batch
        after batch."""
        found, existed = await store.append_batch([_new("r", k) for k in ("c", "a", "b")], T0)
        assert existed == 0
        assert {key: m.seq for key, m in found.items()} == {
            ("r", "user-a", "c"): 1,
            ("r", "user-a", "a"): 2,
            ("r", "user-a", "b"): 3,
        }
        found, existed = await store.append_batch([_new("r", "e"), _new("r", "d")], T0)
        assert existed == 0
        assert {key: m.seq for key, m in found.items()} == {
            ("r", "user-a", "e"): 4,
            ("r", "user-a", "d"): 5,
        }

    async def test_a_stored_key_answers_the_stored_message(self, store: MessageStore) -> None:
        """Appending a stored key again (the same sender's retry, whatever else it carries)
        answers the stored message, counts it as existing and stores nothing: the next new
        message takes the very next seq."""
        first, _ = await store.append_batch([_new("r", "a")], T0)
        retry = NewAppend("r", "a", "another-id", "b@example.com", "other text", False, "user-a")
        found, existed = await store.append_batch(
            [retry, _new("r", "b")], T0 + timedelta(seconds=5)
        )
        assert existed == 1
        assert found[("r", "user-a", "a")] == first[("r", "user-a", "a")]
        assert found[("r", "user-a", "b")].seq == 2
        assert await _seqs(store, "r", limit=10) == ([1, 2], 2)

    async def test_two_senders_with_one_client_msg_id_get_their_own_messages(
        self, store: MessageStore
    ) -> None:
        """Two senders using the same clientMsgId in one room store two messages, each
        answered with its own, whether their appends come in one batch or one after the
        other."""
        first, existed = await store.append_batch([_new("r", "c-1", body="from a")], T0)
        assert existed == 0
        later, existed = await store.append_batch(
            [_new("r", "c-1", body="from b", sender="user-b")], T0
        )
        assert existed == 0
        together, existed = await store.append_batch(
            [_new("s", "c-1", body="from a"), _new("s", "c-1", body="from b", sender="user-b")], T0
        )
        assert existed == 0
        for room, a, b in [("r", first, later), ("s", together, together)]:
            mine, theirs = a[(room, "user-a", "c-1")], b[(room, "user-b", "c-1")]
            assert (mine.seq, mine.email, mine.text) == (1, "user-a@example.com", "from a")
            assert (theirs.seq, theirs.email, theirs.text) == (2, "user-b@example.com", "from b")
            assert mine.id != theirs.id and mine.client_msg_id == theirs.client_msg_id == "c-1"
            assert await store.page(room, before_seq=None, after_seq=None, limit=10) == (
                [mine, theirs], 2
            )  # fmt: skip

    async def test_each_sender_retrying_a_shared_client_msg_id_gets_their_own(
        self, store: MessageStore
    ) -> None:
        """When two senders stored the same clientMsgId, each one's retry answers that
        sender's own message and stores nothing."""
        stored, _ = await store.append_batch(
            [_new("r", "c-1", body="from a"), _new("r", "c-1", body="from b", sender="user-b")], T0
        )
        retries = [_new("r", "c-1", body="again", sender=s) for s in ("user-b", "user-a")]
        found, existed = await store.append_batch(retries, T0 + timedelta(seconds=5))
        assert (found, existed) == (stored, 2)
        assert await _seqs(store, "r", limit=10) == ([1, 2], 2)

    async def test_rooms_in_one_batch_number_their_own_messages(self, store: MessageStore) -> None:
        """Each room of a batch gets its own seqs from 1, in the order its appends were given."""
        appends = [_new("x", "1"), _new("y", "1"), _new("x", "2"), _new("y", "2"), _new("y", "3")]
        found, existed = await store.append_batch(appends, T0)
        assert existed == 0
        assert [found[(room, "user-a", key)].seq for room, key, *_ in appends] == [1, 1, 2, 2, 3]
        assert await _seqs(store, "x", limit=10) == ([1, 2], 2)
        assert await _seqs(store, "y", limit=10) == ([1, 2, 3], 3)

    async def test_messages_have_the_wire_fields(self, store: MessageStore) -> None:
        """A message carries its append's fields, its time in UTC to the millisecond (truncated)
        with ``Z``, and its clientMsgId only when the client supplied it."""
        plus_two = timezone(timedelta(hours=2))
        created_at = datetime(2026, 11, 28, 23, 58, 16, 822999, tzinfo=plus_two)
        appends = [
            NewAppend("r", "c1", "id-1", "a@example.com", "hello", True, "user-a"),
            NewAppend("r", "gw-7", "id-2", "b@example.com", "tab\there", False, "b@example.com"),
        ]
        found, _ = await store.append_batch(appends, created_at)
        expected = [
            Message(id="id-1", room_id="r", seq=1, email="a@example.com", text="hello",
                    ts="2026-11-28T21:58:16.822Z", client_msg_id="c1"),
            Message(id="id-2", room_id="r", seq=2, email="b@example.com", text="tab\there",
                    ts="2026-11-28T21:58:16.822Z", client_msg_id=None),
        ]  # fmt: skip
        assert [found[("r", "user-a", "c1")], found[("r", "b@example.com", "gw-7")]] == expected
        assert await store.page("r", before_seq=None, after_seq=None, limit=10) == (expected, 2)

    async def test_messages_read_back_equal_the_appended_ones(self, store: MessageStore) -> None:
        """Every page holds exactly the messages the appends returned, whichever way it is read."""
        appended = await _fill(store, "r", 6)
        newest, head = await store.page("r", before_seq=None, after_seq=None, limit=6)
        assert (newest, head) == (appended, 6)
        after, _ = await store.page("r", before_seq=None, after_seq=0, limit=6)
        assert after == appended
        replica, _ = await store.page("r", before_seq=4, after_seq=None, limit=6, replica_ok=True)
        assert replica == appended[:3]

    async def test_page_without_after_seq_is_the_newest_before(self, store: MessageStore) -> None:
        """Without ``after_seq`` a page is the newest messages below ``before_seq`` (or the
        newest of all), ascending, with the room's head."""
        await _fill(store, "r", 10)
        assert await _seqs(store, "r", limit=3) == ([8, 9, 10], 10)
        assert await _seqs(store, "r", before_seq=5, limit=3) == ([2, 3, 4], 10)
        assert await _seqs(store, "r", before_seq=3, limit=3) == ([1, 2], 10)
        assert await _seqs(store, "r", before_seq=1, limit=3) == ([], 10)
        assert await _seqs(store, "r", before_seq=100, limit=2) == ([9, 10], 10)
        assert await _seqs(store, "r", limit=50) == (list(range(1, 11)), 10)
        assert await _seqs(store, "r", limit=0) == ([], 10)

    async def test_page_with_after_seq_is_the_oldest_after(self, store: MessageStore) -> None:
        """With ``after_seq`` a page is the oldest messages above it, below ``before_seq`` if
        given, ascending, with the room's head."""
        await _fill(store, "r", 10)
        assert await _seqs(store, "r", after_seq=0, limit=3) == ([1, 2, 3], 10)
        assert await _seqs(store, "r", after_seq=3, limit=3) == ([4, 5, 6], 10)
        assert await _seqs(store, "r", after_seq=8, limit=5) == ([9, 10], 10)
        assert await _seqs(store, "r", after_seq=3, before_seq=6, limit=10) == ([4, 5], 10)
        assert await _seqs(store, "r", after_seq=3, before_seq=10, limit=2) == ([4, 5], 10)
        assert await _seqs(store, "r", after_seq=5, before_seq=6, limit=10) == ([], 10)
        assert await _seqs(store, "r", after_seq=5, before_seq=3, limit=10) == ([], 10)

    async def test_page_after_the_head_is_empty(self, store: MessageStore) -> None:
        """A page asked after the room's last seq is empty and still tells the head."""
        await _fill(store, "r", 4)
        assert await _seqs(store, "r", after_seq=4, limit=10) == ([], 4)
        assert await _seqs(store, "r", after_seq=40, limit=10) == ([], 4)

    async def test_an_empty_room_has_head_zero(self, store: MessageStore) -> None:
        """A room without messages (even next to one with messages) pages empty with head 0."""
        await _fill(store, "other", 3)
        assert await _seqs(store, "r", limit=10) == ([], 0)
        assert await _seqs(store, "r", before_seq=5, limit=10) == ([], 0)
        assert await _seqs(store, "r", after_seq=0, limit=10) == ([], 0)

    async def test_an_empty_batch_stores_nothing(self, store: MessageStore) -> None:
        """An empty batch answers nothing and leaves the store as it was."""
        assert await store.append_batch([], T0) == ({}, 0)
        assert await _seqs(store, "r", limit=10) == ([], 0)
