"""History endpoints: ``append`` and ``append_batch`` (durable, idempotent, ordered) and
``fetch`` (pages)."""

from __future__ import annotations

import asyncio
import re

import msgspec

from chat_common.changes import CHANGE_KINDS, DELETE, EDIT, KINDS, MESSAGE, valid_emoji
from chat_common.chatstate import MAX_USER_ID_LENGTH, USER_ID_PATTERN
from chat_common.errors import ChatError, InvalidArgument
from chat_common.schemas import (
    AppendBatchRequest,
    AppendBatchResponse,
    AppendRequest,
    AppendResult,
    FetchRequest,
    FetchResponse,
    ItemError,
    encode,
    parse_request,
)
from chat_history.store import MessageStore
from chat_history.writer import BatchWriter

__all__ = ["HistoryHandlers"]

_USER_ID = re.compile(USER_ID_PATTERN)


class HistoryHandlers:
    """The history service's endpoints, independent of how they are served."""

    def __init__(
        self, store: MessageStore, writer: BatchWriter, *, max_page: int, max_text: int
    ) -> None:
        self._store = store
        self._writer = writer
        self._max_page = max_page
        self._max_text = max_text

    def _valid(self, req: AppendRequest) -> AppendRequest:
        if not req.client_msg_id:
            raise InvalidArgument("clientMsgId out of range")
        if req.kind not in KINDS:
            raise InvalidArgument("kind must be one of " + ", ".join(sorted(KINDS)))
        if (req.kind in CHANGE_KINDS) != (req.target is not None and req.target >= 1):
            raise InvalidArgument("a change (and only a change) has a target seq")
        if req.kind in (MESSAGE, EDIT):
            if not 1 <= len(req.text) <= self._max_text:
                raise InvalidArgument(f"text must be 1 to {self._max_text} characters")
        elif req.kind == DELETE:
            if req.text:
                raise InvalidArgument("a delete has no text")
        elif not valid_emoji(req.text):
            raise InvalidArgument("not an emoji")
        if req.sender is not None and not (
            len(req.sender) <= MAX_USER_ID_LENGTH and _USER_ID.match(req.sender)
        ):
            raise InvalidArgument("sender is not a user id")
        return req

    async def append(self, body: bytes) -> bytes:
        req = self._valid(parse_request(body, AppendRequest))
        return await self._writer.append(req, client_supplied=req.client_supplied)

    async def append_batch(self, body: bytes) -> bytes:
        """Many appends, one transaction (see :class:`AppendBatchRequest`); an item that is
        not valid is refused alone, the others commit together or fail together."""
        batch = parse_request(body, AppendBatchRequest)
        if not batch.items:
            raise InvalidArgument("no items")
        refused: dict[int, ItemError] = {}
        valid: list[tuple[int, AppendRequest]] = []
        for i, item in enumerate(batch.items):
            try:
                valid.append((i, self._valid(parse_request(item, AppendRequest))))
            except InvalidArgument as exc:
                refused[i] = ItemError(code=exc.code.value, message=exc.message)
        futures = self._writer.append_group([(req, req.client_supplied) for _, req in valid])
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        for failure in failures:
            if not isinstance(failure, ChatError):
                raise failure
        if failures and len(failures) == len(batch.items):
            raise failures[0]  # the usual case (the group fails together): retry it whole
        results = [AppendResult(error=refused[i]) if i in refused else None
                   for i in range(len(batch.items))]  # fmt: skip
        for (i, _), outcome in zip(valid, outcomes, strict=True):
            if isinstance(outcome, ChatError):
                results[i] = AppendResult(
                    error=ItemError(code=outcome.code.value, message=outcome.message)
                )
            elif isinstance(outcome, bytes):
                results[i] = AppendResult(message=msgspec.Raw(outcome))
        return encode(AppendBatchResponse(results=[r for r in results if r is not None]))

    async def fetch(self, body: bytes) -> bytes:
        req = parse_request(body, FetchRequest)
        if not 1 <= req.limit <= self._max_page:
            raise InvalidArgument(f"limit must be 1..{self._max_page}")
        if req.target is not None:
            changes, last = await self._store.changes(
                req.room_id, req.target, after_seq=req.after_seq or 0, limit=req.limit
            )
            return encode(FetchResponse(messages=changes, last_seq=last))
        messages, last = await self._store.page(
            req.room_id,
            before_seq=req.before_seq,
            after_seq=req.after_seq,
            limit=req.limit,
            replica_ok=req.replica_ok,
            viewer=req.viewer,
        )  # the store answers UNAVAILABLE for its own failures
        return encode(FetchResponse(messages=messages, last_seq=last))
