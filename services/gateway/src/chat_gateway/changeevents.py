"""Client events that change a message: ``edit_message``, ``delete_message``, ``react`` and
``unreact``.

Each is appended like ``send_message`` (in the sender's order, idempotent by its
``clientMsgId``, acked once committed with the stored event, the bytes the room's members
get as ``message_changed``); history judges it (:mod:`chat_common.changes`: ``NOT_FOUND``,
``CONFLICT``, ``FORBIDDEN``) in the same transaction that stores it.
"""

from __future__ import annotations

from chat_common.changes import DELETE, EDIT, REACT, UNREACT, valid_emoji
from chat_common.errors import ChatError, ErrorCode, InvalidArgument
from chat_common.schemas import parse_value
from chat_gateway.appends.batcher import AppendBatcher
from chat_gateway.appends.request import append_request
from chat_gateway.events import Handler, Incoming, Result
from chat_gateway.payloads import DeleteMessagePayload, EditMessagePayload, ReactPayload

__all__ = ["CHANGE_EVENTS", "ChangeEvents"]

CHANGE_EVENTS = frozenset({"edit_message", "delete_message", "react", "unreact"})
"""They append, so they take their place in the sender's order on arrival."""


class ChangeEvents:
    """The handlers of the events that change messages."""

    def __init__(self, appender: AppendBatcher, *, max_text_length: int) -> None:
        self._appender = appender
        self._max_text = max_text_length

    def table(self) -> dict[str, Handler]:
        return {
            "edit_message": self.edit_message,
            "delete_message": self.delete_message,
            "react": self.react,
            "unreact": self.unreact,
        }

    async def edit_message(self, event: Incoming) -> Result:
        p = parse_value(event.data, EditMessagePayload)
        if not 1 <= len(p.text) <= self._max_text:
            raise InvalidArgument(f"text must be 1 to {self._max_text} characters")
        return await self._append(event, p.room_id, EDIT, p.seq, p.text, p.client_msg_id)

    async def delete_message(self, event: Incoming) -> Result:
        p = parse_value(event.data, DeleteMessagePayload)
        return await self._append(event, p.room_id, DELETE, p.seq, "", p.client_msg_id)

    async def react(self, event: Incoming) -> Result:
        p = parse_value(event.data, ReactPayload)
        return await self._reaction(event, p, REACT)

    async def unreact(self, event: Incoming) -> Result:
        p = parse_value(event.data, ReactPayload)
        return await self._reaction(event, p, UNREACT)

    async def _reaction(self, event: Incoming, p: ReactPayload, kind: str) -> Result:
        if not valid_emoji(p.emoji):
            raise InvalidArgument("emoji must be 1 to 32 characters, no spaces or controls")
        return await self._append(event, p.room_id, kind, p.seq, p.emoji, p.client_msg_id)

    async def _append(
        self,
        event: Incoming,
        room_id: str,
        kind: str,
        target: int,
        text: str,
        client_msg_id: str | None,
    ) -> Result:
        client = event.client
        if room_id not in client.rooms:
            raise ChatError(ErrorCode.NOT_IN_ROOM, "join the room first")
        req = append_request(client, room_id, text, client_msg_id, kind=kind, target=target)
        slot = event.slot or self._appender.reserve(client.connection_key)
        stored = await self._appender.append(slot, req)
        return Result(b'{"ok":true,"message":' + stored + b"}")
