"""Long-polling without sticky sessions: a request for a session another gateway holds is
relayed to that gateway over NATS, and its answer comes back the same way.

A polling session's Engine.IO sid starts with the tag of the gateway process holding it
(:data:`TAG_LENGTH` hex characters, random per process); every gateway serves
``chat.gateway.<tag>.poll``. A gateway that receives a request for a sid it does not hold
sends the method and body there; the holder handles it as if it had arrived itself
(a GET may be held until there is something to send) and replies with the HTTP answer.
When the client goes away while its relayed GET is held, a cancel message tells the holder,
which then keeps the session's packets for the next poll, as it does for its own clients.
No holder answers for a sid whose gateway is gone: the client gets ``Session ID unknown``
and connects again (and recovers its session).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Coroutine
from typing import Any

import msgspec
import nats.errors
from nats.aio.client import Client as Nats
from nats.aio.msg import Msg

from chat_common.errors import ChatError
from chat_common.natsio import call, publish
from chat_common.subjects import gateway_endpoint
from chat_gateway.edge.answers import HttpAnswer, engineio_error
from chat_gateway.metrics import RELAYED_POLLS

__all__ = ["TAG_LENGTH", "PollRelay", "Relayed"]

_log = logging.getLogger("chat.gateway.pollrelay")
_NO_HOLDER = (nats.errors.NoRespondersError, nats.errors.TimeoutError, TimeoutError)
"""Why a relayed request can find no gateway holding the session."""

TAG_LENGTH = 8
"""Characters of a gateway's tag at the start of each polling sid it issues."""


class Relayed(msgspec.Struct, frozen=True):
    """One polling request relayed to the gateway holding its session (or its cancel)."""

    id: str
    engine_sid: str = msgspec.field(default="", name="sid")
    method: str = ""
    body: bytes = b""
    cancel: bool = False


class _Answer(msgspec.Struct, frozen=True):
    status: int
    body: bytes
    content_type: str
    headers: list[tuple[str, str]]
    close: bool


LocalHandler = Callable[[str, str, bytes], "HttpAnswer | asyncio.Future[HttpAnswer]"]
"""The holder's own handling of a request: (Engine.IO sid, method, body) to an answer or its
future."""


def _subject(tag: str) -> str:
    return gateway_endpoint(tag, "poll")


class PollRelay:
    """Relays polling requests between gateways; one per gateway process."""

    def __init__(self, nc: Nats, *, timeout_s: float) -> None:
        self.tag = secrets.token_hex(TAG_LENGTH // 2)
        self._nc = nc
        self._timeout_s = timeout_s
        self._held: dict[str, asyncio.Future[HttpAnswer]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._local: LocalHandler | None = None

    def new_sid(self) -> str:
        """A fresh Engine.IO sid that routes back to this gateway."""
        return self.tag + secrets.token_urlsafe(15)

    def holder(self, engine_sid: str) -> str | None:
        """The tag of the gateway holding ``engine_sid`` when it is another one."""
        tag = engine_sid[:TAG_LENGTH]
        return tag if len(engine_sid) > TAG_LENGTH and tag != self.tag else None

    async def serve(self, local: LocalHandler) -> None:
        """Answer requests relayed to this gateway with ``local``."""
        self._local = local
        await self._nc.subscribe(_subject(self.tag), cb=self._on_relayed)

    # -- the holder's side --------------------------------------------------------------------

    async def _on_relayed(self, msg: Msg) -> None:
        try:
            relayed = msgspec.json.decode(msg.data, type=Relayed)
        except msgspec.ValidationError:
            _log.warning("malformed relayed poll dropped")
            return
        if relayed.cancel:
            held = self._held.pop(relayed.id, None)
            if held is not None:
                held.cancel()
            return
        assert self._local is not None
        answer = self._local(relayed.engine_sid, relayed.method, relayed.body)
        if isinstance(answer, HttpAnswer):
            await msg.respond(_encode(answer))
            return
        self._held[relayed.id] = answer
        self._spawn(self._answer_when_ready(msg, relayed.id, answer))

    async def _answer_when_ready(
        self, msg: Msg, relay_id: str, answer: asyncio.Future[HttpAnswer]
    ) -> None:
        try:
            result = await answer
        except asyncio.CancelledError:
            return  # the client went away: the session keeps its packets
        finally:
            self._held.pop(relay_id, None)
        await msg.respond(_encode(result))

    # -- the receiving side -------------------------------------------------------------------

    def relay(
        self,
        tag: str,
        engine_sid: str,
        method: str,
        body: bytes,
        decorate: Callable[[HttpAnswer], HttpAnswer],
    ) -> asyncio.Future[HttpAnswer]:
        """Send a request to the gateway tagged ``tag``; the future of its answer. When the
        edge cancels the future (the client left), the holder is told to let go."""
        answer: asyncio.Future[HttpAnswer] = asyncio.get_running_loop().create_future()
        relayed = Relayed(id=secrets.token_hex(8), engine_sid=engine_sid, method=method, body=body)
        asking = self._spawn(self._ask(tag, relayed, answer, decorate))

        def left(future: asyncio.Future[HttpAnswer]) -> None:
            if future.cancelled():
                asking.cancel()
                cancel = msgspec.json.encode(Relayed(id=relayed.id, cancel=True))
                self._spawn(publish(self._nc, _subject(tag), cancel))

        answer.add_done_callback(left)
        return answer

    async def _ask(
        self,
        tag: str,
        relayed: Relayed,
        answer: asyncio.Future[HttpAnswer],
        decorate: Callable[[HttpAnswer], HttpAnswer],
    ) -> None:
        try:
            reply = await call(
                self._nc, _subject(tag), msgspec.json.encode(relayed), timeout=self._timeout_s
            )
            result, outcome = _decode(reply), "answered"
        except ChatError as exc:
            if isinstance(exc.__cause__, _NO_HOLDER):
                result, outcome = engineio_error(1, "Session ID unknown"), "no_holder"
            else:
                _log.warning("relayed poll failed", extra={"error": repr(exc.__cause__ or exc)})
                result, outcome = HttpAnswer(503, b"session unreachable\n"), "failed"
        except (nats.errors.Error, msgspec.ValidationError) as exc:
            _log.warning("relayed poll failed", extra={"error": repr(exc)})
            result, outcome = HttpAnswer(503, b"session unreachable\n"), "failed"
        RELAYED_POLLS.labels(outcome).inc()
        if not answer.done():
            answer.set_result(decorate(result))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        """Cancel what is still waiting (at shutdown)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _encode(answer: HttpAnswer) -> bytes:
    wire = _Answer(
        answer.status, answer.body, answer.content_type, list(answer.headers), answer.close
    )
    return msgspec.json.encode(wire)


def _decode(data: bytes) -> HttpAnswer:
    got = msgspec.json.decode(data, type=_Answer)
    return HttpAnswer(got.status, got.body, got.content_type, tuple(got.headers), got.close)
