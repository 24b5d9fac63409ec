"""Reading a room's history page by page through ``chat.history.fetch``.

Independent of NATS: both functions take the fetch call, so the paging can be checked
against any list of messages.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from chat_common.schemas import FetchRequest, FetchResponse, Message

__all__ = ["Fetch", "last_messages", "message_changes", "replay"]

Fetch = Callable[[FetchRequest], Awaitable[FetchResponse]]


async def last_messages(
    fetch: Fetch, room_id: str, *, count: int, page: int
) -> tuple[list[Message], int]:
    """The newest ``count`` messages in ascending seq, and the room's last seq."""
    messages: list[Message] = []
    before: int | None = None
    head: int | None = None
    while len(messages) < count:
        limit = min(page, count - len(messages))
        reply = await fetch(
            FetchRequest(room_id=room_id, before_seq=before, limit=limit, replica_ok=True)
        )
        head = reply.last_seq if head is None else head
        if not reply.messages:
            break
        messages[:0] = reply.messages
        before = reply.messages[0].seq
        if before <= 1:
            break
    return messages, head or 0


async def replay(
    fetch: Fetch, room_id: str, *, page: int
) -> AsyncIterator[tuple[int, list[Message]]]:
    """Pages ``(head, messages)`` from the room's first message up to ``head``, its last
    seq when the replay began (messages sent meanwhile are not included)."""
    after = 0
    head: int | None = None
    while True:
        reply = await fetch(
            FetchRequest(room_id=room_id, after_seq=after, limit=page, replica_ok=True)
        )
        head = reply.last_seq if head is None else head
        batch = [m for m in reply.messages if m.seq <= head]
        if not batch:
            return
        yield head, batch
        after = batch[-1].seq
        if after >= head:
            return


async def message_changes(
    fetch: Fetch, room_id: str, target: int, *, page: int = 200
) -> list[Message]:
    """Every change to the message at ``target``, in seq order (paged)."""
    found: list[Message] = []
    while True:
        after = found[-1].seq if found else 0
        reply = await fetch(
            FetchRequest(room_id=room_id, target=target, after_seq=after, limit=page)
        )
        found += reply.messages
        if len(reply.messages) < page:
            return found
