"""What a client connection needs of the carrier that moves its frames (no I/O, no imports
of ours).

A *carrier* is a WebSocket (:class:`chat_gateway.edge.websocket.WebSocket`) or an Engine.IO
long-polling session (:class:`chat_gateway.edge.polling.PollingCarrier`); the connection on
top of it (:class:`chat_gateway.connection.client.Client`) knows only this contract:

* **reading**: :meth:`Carrier.recv` gives the client's messages one at a time, ``None`` once
  no more can come;
* **writing never waits**: :meth:`Carrier.write` queues pre-built WebSocket text frames (a
  polling carrier takes their payloads back out), :meth:`Carrier.send_text` one payload;
  only the connection's own task may :meth:`Carrier.drain`;
* **closing never waits**: :meth:`Carrier.close` starts the close and returns, a deadline
  aborts a peer that does not finish; :meth:`Carrier.cut` closes for a limit hit and tells
  the :meth:`Carrier.on_limit` callback once; :meth:`Carrier.abort` drops the connection;
* **moving**: a long-polling session that upgrades to a WebSocket hands that WebSocket to
  the :meth:`Carrier.on_moved` callback, after writing it whatever was still queued; the
  connection carries on there. A WebSocket never moves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol

__all__ = ["Carrier", "Limit"]

Limit = Literal["flood", "overflow"]
"""Which bound a carrier hit when it was cut: a read flood, or a write backlog."""


class Carrier(Protocol):
    """One client connection's transport, as the connection sees it."""

    @property
    def open(self) -> bool:
        """Whether frames can still be sent (no close begun, not lost)."""
        ...

    @property
    def buffered(self) -> int:
        """Bytes queued for the peer and not taken yet."""
        ...

    @property
    def write_cap(self) -> int:
        """Bytes queued above which the carrier is cut (slow consumer)."""
        ...

    @write_cap.setter
    def write_cap(self, value: int) -> None: ...

    @property
    def close_code_received(self) -> int | None:
        """The code of the peer's close frame, if one arrived."""
        ...

    @property
    def closed_by_us(self) -> bool:
        """Whether the close began on our side."""
        ...

    @property
    def last_pong(self) -> float:
        """When the peer last answered a transport-level ping (loop time)."""
        ...

    def on_limit(self, callback: Callable[[Limit], None]) -> None:
        """Call ``callback`` once if the carrier is cut for a flood or a backlog."""
        ...

    def on_moved(self, callback: Callable[[Carrier], None]) -> None:
        """Call ``callback`` with the carrier the connection moves to, if it ever does."""
        ...

    async def recv(self) -> str | bytes | None:
        """The next message (text as ``str``); ``None`` once no more can come."""
        ...

    def write(self, data: bytes) -> bool:
        """Queue pre-built text frames; ``False`` (nothing queued) once closing."""
        ...

    def send_text(self, payload: bytes) -> bool:
        """Queue one text frame carrying ``payload``; ``False`` once closing."""
        ...

    def ping(self) -> None:
        """A transport-level ping, where the transport has one."""
        ...

    async def drain(self) -> None:
        """Wait until the transport takes writes again (or is gone)."""
        ...

    def close(self, code: int, reason: str = "", *, timeout_s: float | None = None) -> bool:
        """Start closing with ``code``; ``False`` when a close had begun already."""
        ...

    def cut(self, limit: Limit, code: int, reason: str, *, grace_s: float | None = None) -> None:
        """Close for a limit hit (the :meth:`on_limit` callback hears of it once)."""
        ...

    def abort(self) -> None:
        """Drop the connection now."""
        ...

    async def wait_closed(self) -> None:
        """Wait until the connection is gone."""
        ...
