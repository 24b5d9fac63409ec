"""Where messages live: the store interface, in its own terms (no database driver here).

:class:`MessageStore` is kept by :class:`~chat_history.pgstore.PostgresMessageStore` (the
service's) and :class:`~chat_history.memorystore.InMemoryMessageStore` (fast tests of the
logic above it); the contract suite in ``tests/contracts/message_store.py`` holds both
to the same answers.

Errors::

    chat_common.errors.Unavailable
    └── StoreUnavailable      the store cannot serve now; the same call may work later

Anything else a store raises is for good: trying the same call again gives the same error.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple, Protocol

from chat_common.changes import MESSAGE
from chat_common.errors import Unavailable
from chat_common.schemas import ItemError, Message

__all__ = ["Key", "MessageStore", "NewAppend", "StoreUnavailable", "Stored"]

Key = tuple[str, str, str]
"""(room_id, sender, client_msg_id): the identity of a message. A ``client_msg_id`` names a
message of one sender in one room, so two senders numbering their messages alike (``c-1``,
``c-2``...) never collide."""


class NewAppend(NamedTuple):
    """One event to store: a message, or a change to the message at ``target``
    (:mod:`chat_common.changes`; ``body`` is an edit's text, a reaction's emoji, a
    delete's empty string)."""

    room_id: str
    client_msg_id: str
    id: str
    email: str
    body: str
    client_supplied: bool
    sender: str
    """The sender's user id; for an append from a gateway without user ids, the email
    (what a user id is in development mode, and what migration 0003 gave the messages
    stored before 0002)."""
    kind: str = MESSAGE
    target: int | None = None

    @property
    def key(self) -> Key:
        return (self.room_id, self.sender, self.client_msg_id)


Stored = Message | ItemError
"""An append's outcome: its event as stored, or why a change was refused (``NOT_FOUND``,
``CONFLICT``, ``FORBIDDEN``: for good, nothing stored; the same change later is judged
again)."""


class StoreUnavailable(Unavailable):
    """The store cannot serve now (its server is down, slow, busy or lost the connection,
    or a concurrent writer got in the way); the same call may succeed later.

    History's own type rather than :class:`~chat_common.errors.Unavailable` itself, and a
    subclass of it. Its own type, so that the batch writer retries what a store declared
    worth retrying, and nothing else that happens to be ``UNAVAILABLE``; a subclass, so that
    a failing :meth:`MessageStore.page` reaches the caller as ``UNAVAILABLE`` (its stable
    code) with no translation in the handlers. Its message is safe to show: an
    implementation translates its driver's errors into it (the driver's error, kept as
    ``__cause__``, is for logs, by class name only: database errors may quote message text).
    """

    def __init__(self, message: str = "message store unavailable") -> None:
        super().__init__(message)


class MessageStore(Protocol):
    """Each room's messages, numbered 1, 2, 3... without gaps, keyed by ``(room_id, sender,
    client_msg_id)`` (:data:`Key`)."""

    async def append_batch(
        self, appends: Sequence[NewAppend], created_at: datetime
    ) -> tuple[dict[Key, Stored], int]:
        """Store ``appends`` (distinct keys) all together or none of them.

        A key already stored is answered with its stored event and nothing is written
        for it; the others get the next seqs of their room, in the order given, and
        ``created_at``, except a change that the rules of :mod:`chat_common.changes`
        refuse (judged in order: a delete earlier in the batch counts), which is answered
        with its error and takes no seq. A change is applied to its target as it is
        stored. Each room that got messages has its last activity moved to
        ``created_at``, and a sender who is a member of the room (durable chat state,
        :mod:`chat_history.statestore`) has read up to their newest new message there.
        Returns every key's outcome and how many were already stored.
        Raises :class:`StoreUnavailable` when trying again may work (retrying is safe:
        appends are idempotent by key); any other error is for good.
        """
        ...

    async def page(
        self,
        room_id: str,
        *,
        before_seq: int | None,
        after_seq: int | None,
        limit: int,
        replica_ok: bool = False,
        viewer: str | None = None,
    ) -> tuple[list[Message], int]:
        """Up to ``limit`` items in ascending seq, and the room's last seq (0 for a room
        with none), as of one moment.

        With ``after_seq``: the oldest *events* after it (and before ``before_seq`` if
        given), messages and changes as stored (a deleted message's text, and its edits',
        erased). Otherwise: the newest *messages* before ``before_seq`` (or the newest of
        all) as they are now, with ``viewer``'s reactions marked ``me``.
        ``replica_ok``: the answer may lag a moment behind the latest commit. Raises
        :class:`StoreUnavailable` when the store cannot answer.
        """
        ...

    async def changes(
        self, room_id: str, target: int, *, after_seq: int, limit: int
    ) -> tuple[list[Message], int]:
        """Up to ``limit`` changes to the message at ``target``, as stored, in seq order
        after ``after_seq``, and the room's last seq (a message's history of changes).
        Raises :class:`StoreUnavailable` when the store cannot answer."""
        ...
