"""The append request of a client event that stores something in a room (a message, or a
change to one): who sends it, its idempotency key, when the gateway received it."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

from chat_common.changes import MESSAGE
from chat_common.schemas import AppendRequest

if TYPE_CHECKING:
    from chat_gateway.connection.client import Client

__all__ = ["append_request"]


def append_request(
    client: Client,
    room_id: str,
    text: str,
    client_msg_id: str | None,
    *,
    kind: str = MESSAGE,
    target: int | None = None,
) -> AppendRequest:
    """What history is asked to store for ``client`` (a member of ``room_id``): without a
    ``client_msg_id`` the gateway makes one (its own retries stay idempotent; the event then
    shows ``null``)."""
    email = client.session.email
    assert email is not None  # a member has joined, which fixed it
    return AppendRequest(
        room_id=room_id,
        email=email,
        text=text,
        client_msg_id=client_msg_id or uuid.uuid4().hex,
        client_supplied=client_msg_id is not None,
        received_at=time.time(),
        sender=client.user_id,
        kind=kind,
        target=target,
    )
