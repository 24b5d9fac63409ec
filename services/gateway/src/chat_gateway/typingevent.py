"""The client event ``typing {roomId, typing}``: a member starts, renews or stops typing.

Only a member of the room may say it (``NOT_IN_ROOM`` otherwise, as for ``send_message``);
past the user's bound it is ``RATE_LIMITED`` and nothing is published. The ack, when asked
for, is ``{ok: true}``. What happens next is :mod:`chat_gateway.rooms.typingsend`'s (this
gateway publishes) and :mod:`chat_gateway.rooms.typingfanout`'s (every gateway with
members in the room shows it).
"""

from __future__ import annotations

from chat_common.errors import ChatError, ErrorCode
from chat_common.schemas import parse_value
from chat_gateway.events import Handler, Incoming, Result
from chat_gateway.payloads import TypingPayload
from chat_gateway.rooms.typingsend import TypingSender

__all__ = ["TypingEvents"]


class TypingEvents:
    """The ``typing`` event's handler."""

    def __init__(self, sender: TypingSender) -> None:
        self._sender = sender

    def table(self) -> dict[str, Handler]:
        return {"typing": self.typing}

    async def typing(self, event: Incoming) -> Result:
        client, p = event.client, parse_value(event.data, TypingPayload)
        if p.room_id not in client.rooms:
            raise ChatError(ErrorCode.NOT_IN_ROOM, "join the room first")
        await self._sender.signal(client, p.room_id, typing=p.typing)
        return Result({"ok": True})
