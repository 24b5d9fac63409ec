"""Group commit: appends collected for a few milliseconds are written in one transaction.

Each caller gets its message only after the transaction that holds it has committed
(ack means durable). A batch whose store raises
:class:`~chat_history.store.StoreUnavailable` is retried as a whole; because messages are
keyed by ``(room_id, sender, client_msg_id)``, a retry after a lost COMMIT finds the rows
instead of writing them twice. Any other failure splits the batch, so that only the append
at fault fails.

An append without a sender (from a gateway that predates user ids) is the email's: in
development mode that is the user id, and migration 0003 gave the messages stored before
user ids the same sender, so a retry across the upgrade still finds its message.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link

from chat_common.backoff import Backoff
from chat_common.errors import ChatError, ErrorCode, Unavailable
from chat_common.schemas import AppendRequest, ItemError, Message, encode
from chat_common.tracing import tracer
from chat_history.metrics import APPENDS, BATCH_SIZE, COMMIT_SECONDS
from chat_history.store import Key, MessageStore, NewAppend, Stored, StoreUnavailable

__all__ = ["BatchWriter", "Committed", "OnCommitted"]

_log = logging.getLogger("chat.history.writer")


@dataclass(frozen=True, slots=True)
class Committed:
    """A message after COMMIT (and its JSON, the bytes every reader gets), with the trace
    context and receipt time of its sender, and the sender's user id (the email for a
    gateway without user ids: the message's key and stored sender)."""

    message: Message
    raw: bytes
    ctx: Context
    received_at: float | None
    sender: str


OnCommitted = Callable[[list[Committed]], Awaitable[None]]
_tracer = tracer("chat.history.writer")


@dataclass(slots=True)
class _Pending:
    req: AppendRequest
    client_supplied: bool
    future: asyncio.Future[bytes] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    ctx: Context = field(default_factory=otel_context.get_current)

    @property
    def sender(self) -> str:
        """The sender's user id, or the email for a gateway without user ids."""
        return self.req.email if self.req.sender is None else self.req.sender

    @property
    def key(self) -> Key:
        return (self.req.room_id, self.sender, self.req.client_msg_id)


def _origin(exc: BaseException) -> str:
    """``file:line`` of the innermost frame of our own code in the traceback."""
    origin = "?"
    tb = exc.__traceback__
    while tb is not None:
        if "chat_" in tb.tb_frame.f_code.co_filename:
            origin = f"{tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}"
        tb = tb.tb_next
    return origin


class BatchWriter:
    """Queue of appends and the loop that commits them in batches."""

    def __init__(
        self,
        store: MessageStore,
        *,
        batch_max: int,
        linger_s: float,
        attempts: int,
        on_committed: OnCommitted,
    ) -> None:
        self._store = store
        self._max = batch_max
        self._linger = linger_s
        self._attempts = attempts
        self._on_committed = on_committed
        self._queue: asyncio.Queue[list[_Pending]] = asyncio.Queue()

    async def append(self, req: AppendRequest, *, client_supplied: bool) -> bytes:
        """Store ``req`` (or find it stored); its message's JSON once durable."""
        (future,) = self.append_group([(req, client_supplied)])
        return await future

    def append_group(self, reqs: list[tuple[AppendRequest, bool]]) -> list[asyncio.Future[bytes]]:
        """Queue appends that commit together, in one transaction, in this order (seqs
        follow it); each future gets its message's JSON once durable."""
        group = [_Pending(req, client_supplied) for req, client_supplied in reqs]
        if group:
            self._queue.put_nowait(group)
        return [p.future for p in group]

    async def run(self) -> None:
        """The commit loop (a supervised task). A batch takes whole groups, up to about
        ``batch_max`` appends (a larger group goes alone)."""
        while True:
            batch = await self._queue.get()
            if self._linger > 0 and len(batch) + self._queue.qsize() < self._max:
                await asyncio.sleep(self._linger)
            while len(batch) < self._max and not self._queue.empty():
                batch = batch + self._queue.get_nowait()
            await self._commit_with_retries(batch)

    async def _commit_with_retries(self, batch: list[_Pending]) -> None:
        live = [p for p in batch if not p.future.done()]
        if not live:
            return
        backoff = Backoff(0.05, cap_s=5.0, factor=4)
        for attempt in range(1, self._attempts + 1):
            try:
                stored = await self._traced_commit(live)
                break
            except StoreUnavailable as exc:
                # The store's own error names no driver; the one it translated does (by
                # class only: its text may quote the message).
                _log.warning(
                    "batch commit failed",
                    extra={
                        "attempt": attempt,
                        "size": len(live),
                        "error": type(exc.__cause__ or exc).__name__,
                    },
                )
                if attempt == self._attempts:
                    for p in live:
                        if not p.future.done():
                            APPENDS.labels("failed").inc()
                            p.future.set_exception(Unavailable("message store unavailable"))
                    return
                await asyncio.sleep(backoff.next())
            except Exception as exc:
                # Not transient (a constraint, a bug). Isolate the culprit: write the batch
                # one append at a time so only the offending one fails.
                if len(live) > 1:
                    for p in live:
                        await self._commit_with_retries([p])
                    return
                # Database errors quote the failing row (the message text): log the class,
                # the SQLSTATE and where it was raised, never the error's text.
                _log.error(
                    "append failed for good",
                    extra={
                        "error": type(exc).__name__,
                        "sqlstate": getattr(exc, "sqlstate", None),
                        "where": _origin(exc),
                    },
                )
                for p in live:
                    if not p.future.done():
                        APPENDS.labels("failed").inc()
                        p.future.set_exception(ChatError(ErrorCode.INTERNAL, "internal error"))
                return
        raw = {key: encode(m) for key, m in stored.items() if isinstance(m, Message)}
        for p in live:
            if p.future.done():
                continue
            outcome = stored[p.key]
            if isinstance(outcome, ItemError):  # a change refused (judged, for good)
                APPENDS.labels("refused").inc()
                p.future.set_exception(ChatError(outcome.code, outcome.message))
            else:
                p.future.set_result(raw[p.key])
        senders = {p.key: p for p in live}
        committed = sorted(
            (
                Committed(m, raw[k], senders[k].ctx, senders[k].req.received_at, senders[k].sender)
                for k, m in stored.items()
                if k in senders and isinstance(m, Message)
            ),
            key=lambda c: (c.message.room_id, c.message.seq),
        )
        try:
            await self._on_committed(committed)
        except Exception:
            _log.exception("fan-out publish failed after commit")

    async def _traced_commit(self, batch: list[_Pending]) -> dict[Key, Stored]:
        """One transaction, as a span in the first sender's trace, linked to the others'."""
        BATCH_SIZE.observe(len(batch))
        started = time.perf_counter()
        with _tracer.start_as_current_span(
            "history.commit",
            context=batch[0].ctx,
            links=lambda: [
                Link(trace.get_current_span(p.ctx).get_span_context()) for p in batch[1:]
            ],
            attributes=lambda: {"db.system.name": "postgresql", "chat.batch.size": len(batch)},
            record_exception=False,  # database errors quote the failing row: no text in traces
        ):
            stored = await self._commit(batch)
        COMMIT_SECONDS.observe(time.perf_counter() - started)
        return stored

    async def _commit(self, batch: list[_Pending]) -> dict[Key, Stored]:
        first_by_key: dict[Key, _Pending] = {}
        for p in batch:
            first_by_key.setdefault(p.key, p)
        appends = [
            NewAppend(p.req.room_id, p.req.client_msg_id, uuid.uuid4().hex, p.req.email,
                      p.req.text, p.client_supplied, p.sender, p.req.kind, p.req.target)
            for p in first_by_key.values()
        ]  # fmt: skip
        found, existed = await self._store.append_batch(appends, datetime.now(UTC))
        APPENDS.labels("duplicate").inc(existed)
        APPENDS.labels("stored").inc(sum(isinstance(m, Message) for m in found.values()) - existed)
        return found
