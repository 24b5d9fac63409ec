"""The connections that fell behind, caught up from history (asyncio; the decisions are
:class:`~chat_gateway.connection.catchup.CatchUp`'s).

A connection becomes a laggard when the writer (:mod:`chat_gateway.rooms.writer`) withholds
one of its room events or holds its presence. One task, running while there are laggards,
looks at each of them every ``tick_s``: it cuts one that never drains (4008), writes the
presence held for one that drained, and starts the page one asks for: a ``fetch {roomId,
afterSeq, limit}`` from history, the same read as a resume replay and a gap fill, whose
items become events by :func:`~chat_gateway.rooms.fanout.page_item` and frames by
:func:`~chat_gateway.rooms.frames.frame_for`, like live ones. A laggard holds at most one
page, the one in flight; it is written as soon as it arrives and let go.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from chat_common.schemas import FetchRequest, FetchResponse
from chat_gateway.connection.catchup import CatchUp, CatchUpLimits, PageRequest
from chat_gateway.connection.client import Client, cut_slow
from chat_gateway.metrics import CATCHUP_PAGES
from chat_gateway.rooms.fanout import Fanout, page_item
from chat_gateway.rooms.frames import write_items

__all__ = ["Fetch", "Laggards"]

_log = logging.getLogger("chat.gateway.catchup")

Fetch = Callable[[FetchRequest], Awaitable[FetchResponse]]
"""A page of a room's history (``BusBackend.fetch``)."""


class Laggards:
    """Every connection of this gateway that is behind (see the module docstring)."""

    def __init__(self, fetch: Fetch, *, limits: CatchUpLimits, tick_s: float) -> None:
        self._fetch = fetch
        self._limits = limits
        self._tick_s = tick_s
        self._clients: dict[str, Client] = {}
        self._ticker: asyncio.Task[None] | None = None
        self._pages: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._clients)

    def lag(self, client: Client) -> CatchUp[Fanout]:
        """``client``'s catch-up state, made (and watched) if it had none."""
        lag: CatchUp[Fanout] | None = client.catchup
        if lag is None:
            loop = asyncio.get_running_loop()
            lag = client.catchup = CatchUp(self._limits, now=loop.time())
            self._clients[client.connection_key] = client
            if self._ticker is None or self._ticker.done():
                self._ticker = loop.create_task(self._watch(), name="catch-up")
        return lag

    def forget(self, client: Client, room_id: str) -> None:
        """``client`` left ``room_id``: nothing more of it to catch up."""
        lag: CatchUp[Fanout] | None = client.catchup
        if lag is not None:
            lag.forget(room_id)

    async def close(self) -> None:
        """Stop watching (shutdown)."""
        tasks = [*self._pages, *([self._ticker] if self._ticker is not None else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in self._clients.values():
            client.catchup = None
        self._clients.clear()

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while self._clients:
            await asyncio.sleep(self._tick_s)
            now = loop.time()
            for key, client in list(self._clients.items()):
                lag: CatchUp[Fanout] | None = client.catchup
                if lag is None or not client.carrier.open:
                    self._let_go(key, client)
                    continue
                step = lag.step(client.queued, now)
                if step.cut:
                    _log.warning("behind and not draining", extra={"rooms": len(lag.behind)})
                    self._let_go(key, client)
                    cut_slow(client)
                    continue
                write_items(client, step.presence)
                if step.page is not None:
                    task = loop.create_task(self._page(client, lag, step.page))
                    self._pages.add(task)
                    task.add_done_callback(self._pages.discard)
                elif lag.live:
                    self._let_go(key, client)

    async def _page(self, client: Client, lag: CatchUp[Fanout], request: PageRequest) -> None:
        room_id = request.room_id
        try:
            page = await self._fetch(
                FetchRequest(room_id=room_id, after_seq=request.after_seq, limit=request.limit)
            )
        except Exception as exc:
            _log.warning("catch-up page failed", extra={"room": room_id, "error": repr(exc)})
            lag.page_failed(request)
            return
        CATCHUP_PAGES.inc()
        items = [page_item(room_id, message) for message in page.messages]
        now = asyncio.get_running_loop().time()
        write_items(client, lag.page_done(request, items, head=page.last_seq, now=now))
        if lag.live and client.catchup is lag:
            self._let_go(client.connection_key, client)

    def _let_go(self, key: str, client: Client) -> None:
        self._clients.pop(key, None)
        client.catchup = None
