"""The contract of changes to messages (edits, deletes, reactions), written once:
:class:`MessageChangesContract`, run on every message store by the classes that run
:class:`~tests.contracts.message_store.MessageStoreContract` (same ``store`` fixture).

What it holds a store to: a change is the room's next seq, judged by the rules of
``chat_common.changes`` (refusals store nothing and take no seq), idempotent by its key;
pages *after* a seq give the events as stored (a deleted message's text erased), pages
*before* give the messages as they are now; and a reader applying the events
(:class:`~chat_common.changes.RoomView`) shows exactly what a page of messages as they are
now shows.
"""

from __future__ import annotations

import itertools
import json
import random
from datetime import timedelta
from typing import Any

from chat_common.changes import DELETE, EDIT, REACT, UNREACT, RoomView
from chat_common.schemas import ItemError, Message, encode
from chat_history.store import MessageStore, NewAppend, Stored
from tests.contracts.message_store import T0

__all__ = ["MessageChangesContract"]

_KEYS = itertools.count()


def _key() -> str:
    return f"k{next(_KEYS)}"


def _email(user: str) -> str:
    return f"{user}@example.com"


def _message(room: str, user: str, text: str = "hello") -> NewAppend:
    return NewAppend(room, _key(), f"id-{_key()}", _email(user), text, True, user)


def _change(room: str, user: str, kind: str, target: int, body: str = "") -> NewAppend:
    return NewAppend(room, _key(), f"id-{_key()}", _email(user), body, True, user, kind, target)


async def _one(store: MessageStore, append: NewAppend, at: int = 0) -> Stored:
    found, _ = await store.append_batch([append], T0 + timedelta(seconds=at))
    return found[append.key]


async def _stored(store: MessageStore, append: NewAppend, at: int = 0) -> Message:
    outcome = await _one(store, append, at)
    assert isinstance(outcome, Message), outcome
    return outcome


async def _now(store: MessageStore, room: str, viewer: str | None = None) -> list[Message]:
    messages, _ = await store.page(room, before_seq=None, after_seq=None, limit=1000, viewer=viewer)
    return messages


async def _events(store: MessageStore, room: str, after: int = 0) -> list[Message]:
    events, _ = await store.page(room, before_seq=None, after_seq=after, limit=1000)
    return events


def _json(messages: list[Message]) -> list[dict[str, Any]]:
    return [json.loads(encode(m)) for m in messages]


class MessageChangesContract:
    """Every test of the changes contract; a subclass provides the ``store`` fixture."""

    async def test_an_edit_is_the_next_seq_and_changes_the_message(
        self, store: MessageStore
    ) -> None:
        """An author's edit is stored as the room's next seq pointing at the message; the
        page of messages shows the new text with ``editedAt``, the page of events shows the
        message as sent and then the edit."""
        sent = await _stored(store, _message("r", "ann", "helo"))
        edit = await _stored(store, _change("r", "ann", EDIT, 1, "hello"), at=5)
        assert (edit.seq, edit.kind, edit.target, edit.text) == (2, EDIT, 1, "hello")
        (now,) = await _now(store, "r")
        assert (now.seq, now.text, now.edited_at, now.kind) == (1, "hello", edit.ts, None)
        assert await _events(store, "r") == [sent, edit]

    async def test_only_the_author_edits(self, store: MessageStore) -> None:
        """Someone else's edit is FORBIDDEN and stores nothing (the head stays)."""
        await _stored(store, _message("r", "ann"))
        refused = await _one(store, _change("r", "bob", EDIT, 1, "mine now"))
        assert isinstance(refused, ItemError) and refused.code == "FORBIDDEN"
        assert [m.text for m in await _now(store, "r")] == ["hello"]
        assert len(await _events(store, "r")) == 1

    async def test_a_change_needs_a_message_to_change(self, store: MessageStore) -> None:
        """A change to a seq that is not a message (none there, or a change) is NOT_FOUND."""
        await _stored(store, _message("r", "ann"))
        await _stored(store, _change("r", "ann", REACT, 1, "👍"))
        for target in (2, 3, 99):
            refused = await _one(store, _change("r", "ann", EDIT, target, "x"))
            assert isinstance(refused, ItemError) and refused.code == "NOT_FOUND"
        refused = await _one(store, _change("elsewhere", "ann", REACT, 1, "👍"))
        assert isinstance(refused, ItemError) and refused.code == "NOT_FOUND"
        assert len(await _events(store, "r")) == 2

    async def test_a_delete_erases_the_text_and_takes_no_more_changes(
        self, store: MessageStore
    ) -> None:
        """A deleted message is a tombstone: no text, no reactions, in both pages; its edits'
        texts are erased too; any further change to it is CONFLICT."""
        await _stored(store, _message("r", "ann", "secret"))
        await _stored(store, _change("r", "ann", EDIT, 1, "still secret"))
        await _stored(store, _change("r", "bob", REACT, 1, "👀"))
        gone = await _stored(store, _change("r", "ann", DELETE, 1))
        assert (gone.seq, gone.kind, gone.target, gone.text) == (4, DELETE, 1, "")
        (now,) = await _now(store, "r", viewer="bob")
        assert (now.text, now.deleted, now.reactions, now.edited_at) == ("", True, None, None)
        texts = [(e.kind, e.text) for e in await _events(store, "r")]
        assert texts == [(None, ""), (EDIT, ""), (REACT, ""), (DELETE, "")]
        for change in (_change("r", "ann", EDIT, 1, "back"), _change("r", "ann", DELETE, 1),
                       _change("r", "bob", UNREACT, 1, "👀"), _change("r", "bob", REACT, 1, "🙂")):  # fmt: skip
            refused = await _one(store, change)
            assert isinstance(refused, ItemError) and refused.code == "CONFLICT"
        assert len(await _events(store, "r")) == 4

    async def test_only_the_author_deletes_without_membership(self, store: MessageStore) -> None:
        """Someone else's delete is FORBIDDEN (an owner's is allowed: the chat state
        contract, where rooms have members)."""
        await _stored(store, _message("r", "ann"))
        refused = await _one(store, _change("r", "bob", DELETE, 1))
        assert isinstance(refused, ItemError) and refused.code == "FORBIDDEN"
        assert not (await _now(store, "r"))[0].deleted

    async def test_reactions_count_once_per_user_and_emoji(self, store: MessageStore) -> None:
        """Each user reacts with an emoji once (again: CONFLICT; removing one not there:
        CONFLICT); counts follow; ``me`` is the viewer's; emojis are listed in the order they
        appeared, and one that went back to none comes back last."""
        await _stored(store, _message("r", "ann"))
        for user, kind, emoji in [("ann", REACT, "👍"), ("bob", REACT, "🎉"), ("cat", REACT, "👍"),
                                  ("ann", UNREACT, "👍"), ("bob", UNREACT, "🎉"),
                                  ("bob", REACT, "🎉")]:  # fmt: skip
            await _stored(store, _change("r", user, kind, 1, emoji))
        for user, kind, emoji in [("cat", REACT, "👍"), ("ann", UNREACT, "👍")]:
            refused = await _one(store, _change("r", user, kind, 1, emoji))
            assert isinstance(refused, ItemError) and refused.code == "CONFLICT"
        (as_cat,) = await _now(store, "r", viewer="cat")
        (as_ann,) = await _now(store, "r", viewer="ann")
        assert [(r.emoji, r.count, r.me) for r in as_cat.reactions or []] == [
            ("👍", 1, True), ("🎉", 1, False)
        ]  # fmt: skip
        assert [(r.emoji, r.count, r.me) for r in as_ann.reactions or []] == [
            ("👍", 1, False), ("🎉", 1, False)
        ]  # fmt: skip
        react = (await _events(store, "r"))[1]
        assert (react.kind, react.emoji, react.text, react.target) == (REACT, "👍", "", 1)

    async def test_a_change_is_judged_after_those_before_it_in_its_batch(
        self, store: MessageStore
    ) -> None:
        """In one batch, a delete makes a later edit CONFLICT, and a reaction added and
        removed counts nothing; refused changes take no seq."""
        await _stored(store, _message("r", "ann"))
        await _stored(store, _message("r", "bob"))
        batch = [
            _change("r", "ann", DELETE, 1),
            _change("r", "ann", EDIT, 1, "too late"),
            _change("r", "cat", REACT, 2, "👍"),
            _change("r", "cat", UNREACT, 2, "👍"),
            _change("r", "cat", REACT, 2, "🎉"),
        ]
        found, existed = await store.append_batch(batch, T0)
        outcomes = [found[a.key] for a in batch]
        assert existed == 0
        assert isinstance(outcomes[1], ItemError) and outcomes[1].code == "CONFLICT"
        assert [o.seq for o in outcomes if isinstance(o, Message)] == [3, 4, 5, 6]
        first, second = await _now(store, "r")
        assert first.deleted and [(r.emoji, r.count) for r in second.reactions or []] == [("🎉", 1)]

    async def test_a_change_retried_answers_what_was_stored(self, store: MessageStore) -> None:
        """A change sent again with its key (after a lost ack) answers the stored event and
        stores nothing, even when it would now be refused."""
        await _stored(store, _message("r", "ann"))
        edit = _change("r", "ann", EDIT, 1, "better")
        react = _change("r", "bob", REACT, 1, "👍")
        stored, _ = await store.append_batch([edit, react], T0)
        found, existed = await store.append_batch([react, edit], T0 + timedelta(seconds=5))
        assert (found, existed) == (stored, 2)
        (now,) = await _now(store, "r", viewer="bob")
        assert [(r.emoji, r.count, r.me) for r in now.reactions or []] == [("👍", 1, True)]
        assert len(await _events(store, "r")) == 3

    async def test_applying_the_events_gives_the_messages_as_they_are(
        self, store: MessageStore
    ) -> None:
        """A reader that applies a room's events in seq order from any point (after loading
        the messages as they were then) shows exactly the page of messages as they are now,
        field for field: 300 random messages, edits, deletes and reactions."""
        users = ["ann", "bob", "cat"]
        rng = random.Random(27)
        snapshots: list[tuple[list[Message], int]] = []
        for step in range(300):
            if step % 60 == 0:
                snapshots.append(await store.page("r", before_seq=None, after_seq=None,
                                                  limit=1000, viewer="bob"))  # fmt: skip
            user = rng.choice(users)
            events = await _events(store, "r")
            messages = [e.seq for e in events if e.kind is None]
            kind = rng.choice([None, EDIT, DELETE, REACT, REACT, UNREACT]) if messages else None
            if kind is None:
                await _one(store, _message("r", user, f"m{step}"), at=step)
            else:
                body = rng.choice(["👍", "🎉"]) if kind in (REACT, UNREACT) else ""
                body = f"e{step}" if kind == EDIT else body
                await _one(store, _change("r", user, kind, rng.choice(messages), body), at=step)
        expected = _json(await _now(store, "r", viewer="bob"))
        for page, head in snapshots:
            view = RoomView(_email("bob"))
            view.load(_json(page), last_seq=head)
            for event in _json(await _events(store, "r", after=head)):
                assert view.apply(event)
            assert view.messages() == expected

    async def test_a_messages_changes_are_listed_in_seq_order(self, store: MessageStore) -> None:
        """The changes to one message, and only those, as stored, pageable after a seq."""
        await _stored(store, _message("r", "ann"))
        await _stored(store, _message("r", "bob"))
        mine = [await _stored(store, _change("r", "ann", EDIT, 1, f"v{i}")) for i in range(3)]
        await _stored(store, _change("r", "cat", REACT, 2, "👍"))
        mine.append(await _stored(store, _change("r", "cat", REACT, 1, "👍")))
        assert await store.changes("r", 1, after_seq=0, limit=10) == (mine, 7)
        assert await store.changes("r", 1, after_seq=mine[1].seq, limit=1) == ([mine[2]], 7)
        assert await store.changes("r", 2, after_seq=0, limit=10) == (
            [(await _events(store, "r"))[5]],
            7,
        )
        assert await store.changes("nowhere", 1, after_seq=0, limit=10) == ([], 0)
