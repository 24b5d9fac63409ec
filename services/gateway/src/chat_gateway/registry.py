"""The clients connected to this gateway: who they are, found by connection key.

The loop of each connection adds its client when it starts and removes it when it ends
(:mod:`chat_gateway.connection.loop`); the keepalive, the drain and the session heartbeat
walk it; a takeover finds its client here by connection key, in one lookup.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import msgspec

from chat_common.schemas import TakeoverNotice, decode, encode
from chat_gateway.closecodes import CLOSE_TAKEN_OVER
from chat_gateway.connection.client import Client
from chat_gateway.metrics import CONNECTIONS, SESSIONS

__all__ = ["ClientRegistry"]

_log = logging.getLogger("chat.gateway.registry")


class ClientRegistry:
    """Every client of this gateway, by connection key."""

    def __init__(self, *, instance_id: str) -> None:
        self._instance_id = instance_id
        self._clients: dict[str, Client] = {}
        self._on_add: list[Callable[[Client], None]] = []
        SESSIONS.set_function(lambda: sum(1 for c in self._clients.values() if c.session.held))

    def __len__(self) -> int:
        return len(self._clients)

    def __iter__(self) -> Iterator[Client]:
        """The clients as of now (a copy: the caller may close them as it goes)."""
        return iter(list(self._clients.values()))

    def __contains__(self, client: object) -> bool:
        return isinstance(client, Client) and self._clients.get(client.connection_key) is client

    def on_add(self, callback: Callable[[Client], None]) -> None:
        """Call ``callback`` with every client added from now on."""
        self._on_add.append(callback)

    def add(self, client: Client) -> None:
        self._clients[client.connection_key] = client
        CONNECTIONS.labels(client.protocol).inc()
        for callback in self._on_add:
            callback(client)

    def remove(self, client: Client) -> None:
        if self._clients.pop(client.connection_key, None) is not None:
            CONNECTIONS.labels(client.protocol).dec()

    def find(self, connection_key: str) -> Client | None:
        return self._clients.get(connection_key)

    def take_over(self, notice: bytes) -> None:
        """A :class:`~chat_common.schemas.TakeoverNotice`: the session of one of our
        connections was resumed elsewhere; it leaves the session alone and closes (4009)."""
        try:
            takeover = decode(notice, TakeoverNotice)
        except (msgspec.DecodeError, msgspec.ValidationError):
            _log.warning("undecodable control message")
            return
        client = self.find(takeover.conn)
        if client is not None and not client.closing:
            client.session.take_over()
            client.close(CLOSE_TAKEN_OVER, "session taken over")

    async def status(self, _body: bytes) -> bytes:
        """The ``status`` endpoint: what this instance holds right now."""
        protocols: dict[str, int] = {}
        for client in self._clients.values():
            protocols[client.protocol] = protocols.get(client.protocol, 0) + 1
        return encode(
            {"instance": self._instance_id, "clients": len(self._clients), "protocols": protocols}
        )
