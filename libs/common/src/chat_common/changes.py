"""Changes to messages, as room events (pure, no I/O): what kinds there are, what a
reaction's emoji may be, and how a reader applies the events of a room to what it shows.

Each edit, delete and reaction is the room's next seq, stored and delivered like a message
(:class:`~chat_common.schemas.Message` with a ``kind`` and a ``target`` seq), so ordering,
idempotency (``clientMsgId``), gap filling and resume cover it. A reader either applies the
events as they come (:class:`RoomView`) or asks history for the messages as they are now;
both give the same room (the contract the integration tests check).

Rules history enforces (``chat_history.changelogic``):

* only a message (``kind`` ``message``) is a target; any other seq is ``NOT_FOUND``;
* a deleted message takes no change (``CONFLICT``); its text is erased from storage (its
  edits' texts too) and its reactions dropped;
* only the author edits; the author or a room owner deletes (``FORBIDDEN`` otherwise);
* a user reacts with an emoji once: ``react`` again is ``CONFLICT``, and so is ``unreact``
  of a reaction that is not there; so each stored reaction event moves a count by one.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "CHANGE_KINDS",
    "DELETE",
    "EDIT",
    "KINDS",
    "MAX_EMOJI_LENGTH",
    "MESSAGE",
    "REACT",
    "UNREACT",
    "RoomView",
    "valid_emoji",
]

MESSAGE = "message"
EDIT = "edit"
DELETE = "delete"
REACT = "react"
UNREACT = "unreact"
CHANGE_KINDS = frozenset({EDIT, DELETE, REACT, UNREACT})
KINDS = frozenset({MESSAGE, *CHANGE_KINDS})

MAX_EMOJI_LENGTH = 32
"""The longest reaction, in characters: any emoji sequence (a family with skin tones is
under 15), or a short ``:name:``."""
_EMOJI = re.compile(r"[^\s\x00-\x1f\x7f]+")


def valid_emoji(text: str) -> bool:
    """Whether ``text`` can be a reaction: 1 to :data:`MAX_EMOJI_LENGTH` characters, no
    whitespace or control characters."""
    return 1 <= len(text) <= MAX_EMOJI_LENGTH and _EMOJI.fullmatch(text) is not None


class RoomView:
    """A room as a reader shows it, built from messages as they are (a history page) and
    the events after them, applied in seq order (each once: an event at or below the seq
    the view has is skipped, so replays overlap harmlessly).

    Messages are the JSON objects clients receive (``dict``); reactions are counted per
    emoji in the order each emoji first appeared, and ``me`` is whether ``email`` (the
    reader) reacted. :meth:`messages` gives them as history's ``get_history`` would.
    """

    def __init__(self, email: str, *, seq: int = 0) -> None:
        self._email = email
        self.seq = seq
        """The last seq applied."""
        self._messages: dict[int, dict[str, Any]] = {}

    def load(self, messages: list[dict[str, Any]], *, last_seq: int) -> None:
        """Take messages as they are now (a page of ``get_history``) up to ``last_seq``."""
        for message in messages:
            self._messages[message["seq"]] = dict(message)
        self.seq = max(self.seq, last_seq)

    def apply(self, event: dict[str, Any]) -> bool:
        """Apply one event (a message or a change); ``False`` if it was already applied."""
        seq = event["seq"]
        if seq <= self.seq:
            return False
        self.seq = seq
        kind = event.get("kind", MESSAGE)
        if kind == MESSAGE:
            self._messages[seq] = dict(event)
            return True
        target = self._messages.get(event["target"])
        if target is None:  # before the page the view was loaded with
            return True
        if kind == EDIT:
            target["text"] = event["text"]
            target["editedAt"] = event["ts"]
        elif kind == DELETE:
            target["text"] = ""
            target["deleted"] = True
            target.pop("reactions", None)
            target.pop("editedAt", None)
        else:
            self._react(target, event["emoji"], 1 if kind == REACT else -1, event["email"])
        return True

    def _react(self, target: dict[str, Any], emoji: str, delta: int, email: str) -> None:
        reactions: list[dict[str, Any]] = target.setdefault("reactions", [])
        entry = next((r for r in reactions if r["emoji"] == emoji), None)
        if entry is None:
            entry = {"emoji": emoji, "count": 0}
            reactions.append(entry)
        entry["count"] += delta
        if email == self._email:
            entry["me"] = delta > 0
        if entry.get("me") is False:
            del entry["me"]
        if entry["count"] <= 0:
            reactions.remove(entry)
        if not reactions:
            del target["reactions"]

    def messages(self) -> list[dict[str, Any]]:
        """The messages in seq order, as they are now."""
        return [self._messages[seq] for seq in sorted(self._messages)]
