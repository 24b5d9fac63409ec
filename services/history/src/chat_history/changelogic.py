"""Judging changes to messages, and what the accepted ones do (pure, no I/O).

Both message stores store a batch the same way: they load the state of the messages its
changes target (:class:`Snapshot`), let a :class:`ChangeBatch` judge each change in the
batch's order (the rules of :mod:`chat_common.changes`; an earlier change of the same batch
counts, so an edit after a delete is refused as it would be in the next batch), and then
write what :class:`ChangeBatch` says the accepted ones did: the last edit of each message,
the deleted messages, the reactions added and removed, and each emoji's count after them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chat_common.changes import DELETE, EDIT, MESSAGE, REACT, UNREACT
from chat_common.errors import ErrorCode
from chat_common.schemas import ItemError

__all__ = [
    "ChangeBatch",
    "EmojiCount",
    "EmojiKey",
    "ReactionKey",
    "Snapshot",
    "TargetKey",
    "TargetState",
]

TargetKey = tuple[str, int]
"""(room_id, seq) of a message."""
EmojiKey = tuple[str, int, str]
"""(room_id, seq, emoji): one emoji's reactions to one message."""
ReactionKey = tuple[str, int, str, str]
"""(room_id, seq, emoji, user_id): one user's reaction."""

_NOT_FOUND = ItemError(code=ErrorCode.NOT_FOUND.value, message="no message at that seq")
_DELETED = ItemError(code=ErrorCode.CONFLICT.value, message="the message was deleted")
_NOT_AUTHOR = ItemError(code=ErrorCode.FORBIDDEN.value, message="only its author edits a message")
_NOT_ALLOWED = ItemError(
    code=ErrorCode.FORBIDDEN.value,
    message="only its author or an owner of the room deletes a message",
)
_REACTED = ItemError(code=ErrorCode.CONFLICT.value, message="already reacted with that emoji")
_NOT_REACTED = ItemError(code=ErrorCode.CONFLICT.value, message="no such reaction to remove")


@dataclass(slots=True)
class TargetState:
    """A message a change targets: who sent it, and whether it is deleted."""

    sender: str
    deleted: bool = False


@dataclass(slots=True)
class EmojiCount:
    """How many users reacted with one emoji, and the seq of the reaction that made it
    appear (emojis are listed in that order; one whose count falls to 0 is gone, and comes
    back last)."""

    count: int
    first_seq: int


@dataclass(slots=True)
class Snapshot:
    """What a batch's changes need to know before it is stored: the messages they target
    (only messages: any other seq is absent), who owns which room, which of the reactions
    they add or remove exist, and those emojis' counts."""

    targets: dict[TargetKey, TargetState] = field(default_factory=dict)
    owners: set[tuple[str, str]] = field(default_factory=set)
    """(room_id, user_id) of the rooms' owners."""
    reactions: set[ReactionKey] = field(default_factory=set)
    counts: dict[EmojiKey, EmojiCount] = field(default_factory=dict)


@dataclass(slots=True)
class ChangeBatch:
    """Judges changes in order over a :class:`Snapshot` and collects their effects."""

    state: Snapshot
    edits: dict[TargetKey, tuple[str, int]] = field(default_factory=dict)
    """Each edited message's last edit: (text, the edit's seq)."""
    deletes: dict[TargetKey, int] = field(default_factory=dict)
    """Each deleted message and the seq of its delete."""
    added: set[ReactionKey] = field(default_factory=set)
    removed: set[ReactionKey] = field(default_factory=set)
    counts: dict[EmojiKey, EmojiCount | None] = field(default_factory=dict)
    """The emojis whose count changed, as they are after the batch (``None``: gone)."""

    def judge(
        self, room_id: str, kind: str, target: int | None, sender: str, body: str
    ) -> ItemError | None:
        """Why the change cannot be stored, or ``None`` if it can."""
        state = self.state.targets.get((room_id, target)) if target is not None else None
        if state is None:
            return _NOT_FOUND
        if state.deleted:
            return _DELETED
        if kind == EDIT and sender != state.sender:
            return _NOT_AUTHOR
        if kind == DELETE and sender != state.sender and (room_id, sender) not in self.state.owners:
            return _NOT_ALLOWED
        if kind in (REACT, UNREACT):
            present = (room_id, target, body, sender) in self.state.reactions
            if kind == REACT and present:
                return _REACTED
            if kind == UNREACT and not present:
                return _NOT_REACTED
        return None

    def accept(
        self, room_id: str, kind: str, target: int | None, sender: str, body: str, seq: int
    ) -> None:
        """A judged event is stored at ``seq``: apply what it does."""
        if kind == MESSAGE:
            self.state.targets[(room_id, seq)] = TargetState(sender)
            return
        assert target is not None
        key = (room_id, target)
        if kind == EDIT:
            self.edits[key] = (body, seq)
        elif kind == DELETE:
            self.state.targets[key].deleted = True
            self.deletes[key] = seq
            self.edits.pop(key, None)
            self._drop_reactions(key)
        else:
            self._react((room_id, target, body, sender), kind == REACT, seq)

    def _react(self, reaction: ReactionKey, add: bool, seq: int) -> None:
        emoji = reaction[:3]
        current = self.counts.get(emoji, self.state.counts.get(emoji))
        if add:
            self.state.reactions.add(reaction)
            self.removed.discard(reaction)
            self.added.add(reaction)
            if current is None:
                current = EmojiCount(1, seq)
            else:
                current = EmojiCount(current.count + 1, current.first_seq)
        else:
            self.state.reactions.discard(reaction)
            self.added.discard(reaction)
            self.removed.add(reaction)
            assert current is not None  # judged: the reaction existed, so its emoji did
            current = (
                EmojiCount(current.count - 1, current.first_seq) if current.count > 1 else None
            )
        self.counts[emoji] = current

    def _drop_reactions(self, key: TargetKey) -> None:
        """A deleted message loses its reactions (the stores drop theirs by target)."""
        self.state.reactions = {r for r in self.state.reactions if r[:2] != key}
        self.added = {r for r in self.added if r[:2] != key}
        self.removed = {r for r in self.removed if r[:2] != key}
        self.counts = {e: c for e, c in self.counts.items() if e[:2] != key}
        self.state.counts = {e: c for e, c in self.state.counts.items() if e[:2] != key}
