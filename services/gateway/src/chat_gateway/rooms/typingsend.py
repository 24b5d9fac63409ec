"""Typing at the typist's gateway: what its clients say, published on the room's typing
subject for every gateway with members there (this one included: it hears its own signals
on the room's subscription, like the others).

The gateway publishes typing itself (the bus lets gateways, and only them, publish on
``chat.room.<room>.typing``); nothing is stored, nothing replayed. A user's signals are
bounded by :class:`~chat_gateway.rooms.typingrate.TypingRate`. The gateway remembers which
of its connections said they type in which room, so that a connection leaving the room, or
going away, clears its user at once (:meth:`TypingSender.left`) rather than at the
receivers' expiry. A typist who sends a message needs no signal: the receivers clear them
when the message reaches them. A typist whose network vanishes is cleared by the
receivers' expiry, as is every typist of a gateway that vanishes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from chat_common.errors import ChatError, ErrorCode
from chat_common.schemas import TypingSignal, encode
from chat_common.subjects import room_typing
from chat_gateway.metrics import TYPING_EVENTS
from chat_gateway.rooms.typingrate import TypingRate

if TYPE_CHECKING:
    from chat_gateway.connection.client import Client

__all__ = ["Publish", "TypingSender"]

_log = logging.getLogger("chat.gateway.typing")

Publish = Callable[[str, bytes], Awaitable[None]]
"""Publish on the bus, fire and forget: (subject, data)."""


class TypingSender:
    """Publishes a gateway's clients' typing; see the module docstring."""

    def __init__(
        self,
        publish: Publish,
        *,
        gateway_id: str,
        rate: TypingRate,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._publish = publish
        self._gateway_id = gateway_id
        self._rate = rate
        self._clock = clock
        self._typing: dict[str, dict[str, tuple[str, str]]] = {}
        """connection key -> room -> (user id, email): who said they type, until they stop."""

    def __len__(self) -> int:
        return len(self._typing)

    async def signal(self, client: Client, room_id: str, *, typing: bool) -> None:
        """``client`` (a member of ``room_id``) starts, renews or stops typing there.

        Raises ``RATE_LIMITED`` past the user's bound: nothing is published then."""
        user_id, email = client.user_id, client.session.email
        assert user_id is not None and email is not None  # a member has joined
        wait = self._rate.take(user_id, self._clock())
        if wait > 0:
            TYPING_EVENTS.labels("limited").inc()
            raise ChatError(
                ErrorCode.RATE_LIMITED,
                "typing too often; renew every 3 s",
                retry_after_ms=int(wait * 1000) + 1,
            )
        rooms = self._typing.setdefault(client.connection_key, {})
        if typing:
            rooms[room_id] = (user_id, email)
        else:
            rooms.pop(room_id, None)
            if not rooms:
                del self._typing[client.connection_key]
        await self._send(room_id, user_id, email, typing=typing)

    async def left(self, client: Client, room_id: str) -> None:
        """``client`` is no longer in ``room_id`` here (it left, or went away): if it said
        it types there, say it stopped."""
        rooms = self._typing.get(client.connection_key)
        if rooms is None or (typist := rooms.pop(room_id, None)) is None:
            return
        if not rooms:
            del self._typing[client.connection_key]
        await self._send(room_id, *typist, typing=False)

    async def _send(self, room_id: str, user_id: str, email: str, *, typing: bool) -> None:
        signal = TypingSignal(
            room_id=room_id, user_id=user_id, email=email, typing=typing, gateway=self._gateway_id
        )
        try:
            await self._publish(room_typing(room_id), encode(signal))
        except Exception as exc:  # best effort: a renewal or the receivers' expiry repairs it
            TYPING_EVENTS.labels("lost").inc()
            _log.warning("typing signal not published", extra={"room": room_id, "error": repr(exc)})
            return
        TYPING_EVENTS.labels("published").inc()
