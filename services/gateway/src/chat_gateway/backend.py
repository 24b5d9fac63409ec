"""The gateway's view of the session and history services: typed calls over the bus.

:class:`BusBackend` encodes each request, sends it with a :data:`Request` (over NATS:
:func:`nats_request`; the in-process test harness routes it to the real handlers) and
decodes the answer. Every call is idempotent on the other side, so each one is retried on
``UNAVAILABLE`` with full-jitter backoff within the configured deadline, but the rate
limiter's ``take``, which is tried once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

import msgspec
from nats.aio.client import Client as Nats

from chat_common.natsio import call
from chat_common.retry import RetryPolicy, retry_call
from chat_common.schemas import (
    AppendBatchRequest,
    AppendBatchResponse,
    AppendRequest,
    AppendResult,
    DetachRequest,
    DisconnectRequest,
    FetchRequest,
    FetchResponse,
    HeartbeatRequest,
    HeartbeatResponse,
    JoinRequest,
    JoinResponse,
    LeaveRequest,
    LeaveResponse,
    MembersRequest,
    MembersResponse,
    Message,
    RestoreRequest,
    ResumeRequest,
    ResumeResponse,
    TakeRequest,
    TakeResponse,
    decode,
    encode,
)
from chat_common.subjects import history_endpoint, session_endpoint

__all__ = ["Backend", "BusBackend", "Request", "nats_request"]


GAP_FILL_PAGE = 200
"""Messages fetched at most to fill one gap (a longer gap takes several pages)."""


class Backend(Protocol):
    async def join(self, req: JoinRequest) -> JoinResponse: ...
    async def leave(self, req: LeaveRequest) -> LeaveResponse: ...
    async def members(self, req: MembersRequest) -> MembersResponse: ...
    async def disconnect(self, req: DisconnectRequest) -> None: ...
    async def detach(self, req: DetachRequest) -> None: ...
    async def resume(self, req: ResumeRequest) -> ResumeResponse: ...
    async def heartbeat(self, req: HeartbeatRequest) -> HeartbeatResponse: ...
    async def restore(self, req: RestoreRequest) -> None: ...
    async def take(self, req: TakeRequest) -> TakeResponse: ...
    async def append(self, req: AppendRequest) -> Message: ...
    async def append_batch(self, items: list[bytes]) -> list[AppendResult]: ...
    async def fetch(self, req: FetchRequest) -> FetchResponse: ...


Request = Callable[[str, bytes], Awaitable[bytes]]
"""Send a request body to a subject; the reply body, or a ``ChatError``."""


def nats_request(nc: Nats, *, timeout_s: float) -> Request:
    """:data:`Request` over NATS request/reply (errors mapped by ``natsio.call``)."""

    async def request(subject: str, body: bytes) -> bytes:
        return await call(nc, subject, body, timeout=timeout_s)

    return request


class BusBackend:
    """:class:`Backend` over request/reply."""

    def __init__(self, request: Request, *, policy: RetryPolicy) -> None:
        self._request = request
        self._policy = policy

    async def _call(self, subject: str, body: bytes) -> bytes:
        return await retry_call(self._policy, lambda: self._request(subject, body))

    async def join(self, req: JoinRequest) -> JoinResponse:
        return decode(await self._call(session_endpoint("join"), encode(req)), JoinResponse)

    async def leave(self, req: LeaveRequest) -> LeaveResponse:
        return decode(await self._call(session_endpoint("leave"), encode(req)), LeaveResponse)

    async def members(self, req: MembersRequest) -> MembersResponse:
        body = await self._call(session_endpoint("members"), encode(req))
        return decode(body, MembersResponse)

    async def disconnect(self, req: DisconnectRequest) -> None:
        await self._call(session_endpoint("disconnect"), encode(req))

    async def detach(self, req: DetachRequest) -> None:
        await self._call(session_endpoint("detach"), encode(req))

    async def resume(self, req: ResumeRequest) -> ResumeResponse:
        return decode(await self._call(session_endpoint("resume"), encode(req)), ResumeResponse)

    async def heartbeat(self, req: HeartbeatRequest) -> HeartbeatResponse:
        body = await self._call(session_endpoint("heartbeat"), encode(req))
        return decode(body, HeartbeatResponse)

    async def restore(self, req: RestoreRequest) -> None:
        await self._call(session_endpoint("restore"), encode(req))

    async def take(self, req: TakeRequest) -> TakeResponse:
        # One attempt only: a limiter that is slow to answer must not slow the chat down.
        body = await self._request(session_endpoint("take"), encode(req))
        return decode(body, TakeResponse)

    async def append(self, req: AppendRequest) -> Message:
        return decode(await self._call(history_endpoint("append"), encode(req)), Message)

    async def append_batch(self, items: list[bytes]) -> list[AppendResult]:
        """Encoded :class:`AppendRequest` items, committed together (see the appender)."""
        body = encode(AppendBatchRequest(items=[msgspec.Raw(item) for item in items]))
        reply = await self._call(history_endpoint("append_batch"), body)
        return decode(reply, AppendBatchResponse).results

    async def fetch(self, req: FetchRequest) -> FetchResponse:
        return decode(await self._call(history_endpoint("fetch"), encode(req)), FetchResponse)

    async def fetch_gap(self, room_id: str, after_seq: int, before_seq: int) -> FetchResponse:
        """The messages a room's members missed between two seqs (a page at most)."""
        req = FetchRequest(
            room_id=room_id, after_seq=after_seq, before_seq=before_seq, limit=GAP_FILL_PAGE
        )
        return await self.fetch(req)
