"""Typing at a receiving gateway: the signals a room's typing subject brings, kept per room
in a :class:`~chat_gateway.rooms.typists.Typists` table, sent to the room's live members as
paced ``typing`` frames.

The room hub (:mod:`chat_gateway.rooms.hub`) hands over what concerns typing: each signal
heard on ``chat.room.<room>.typing`` (the room's subscription goes through
:meth:`TypingFanout.around`, which takes them), the sender of each message the room's
stream brings (:meth:`TypingFanout.message`: a typist who sent is no longer typing), a
member made live (:meth:`TypingFanout.greet`: told who types now) and a member leaving
(:meth:`TypingFanout.left`: the typist's gateway says they stopped). One timer per room
with typists wakes it for the next paced frame or the next expiry; renewals set no timer.
A room the gateway no longer follows hears nothing more: its typists expire, then its
table goes.

A frame is encoded once per protocol for the room, and once more for each member who is a
typist (they are not shown themselves). Frames are written with
:meth:`~chat_gateway.connection.client.Client.write_frame` in one place,
:func:`write_typing`, the lowest-priority traffic a connection has.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import msgspec

from chat_common.schemas import TypingSignal, encode
from chat_common.subjects import ROOM_TYPING, room_kind
from chat_gateway.metrics import DELIVERIES, TYPING_FRAMES, TYPING_HEARD
from chat_gateway.protocol.wsframe import text_frame
from chat_gateway.rooms.feed import Deliver
from chat_gateway.rooms.typists import Shown, TypingView, Typists

__all__ = ["Members", "Reader", "TypingConfig", "TypingFanout", "write_typing"]

_log = logging.getLogger("chat.gateway.typing")
_signal = msgspec.json.Decoder(TypingSignal)


class Reader(Protocol):
    """What typing needs of a member's connection (a
    :class:`~chat_gateway.connection.client.Client`)."""

    @property
    def user_id(self) -> str | None: ...

    @property
    def protocol(self) -> str: ...

    @property
    def encode_event(self) -> Callable[[str, bytes], bytes]: ...

    def write_frame(self, frame: bytes) -> bool: ...


R = TypeVar("R", bound=Reader)
Members = Callable[[str], Iterable[R]]
"""A room's live members at this gateway (those whose join has been answered)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TypingConfig:
    """How typing is shown at this gateway (the ``GATEWAY_TYPING_*`` settings)."""

    ttl_s: float = 6.0
    """A typist not renewed for this long is no longer shown."""
    interval_s: float = 1.0
    """At most one ``typing`` frame per room (so per member) per interval."""
    max_names: int = 5
    """Emails per frame; the count covers the rest."""
    room_frames_per_s: float = 1000.0
    """At most this many ``typing`` frames per second for one room at this gateway: a room
    with more live members here than this gets its frames less often than each interval."""


@dataclass(slots=True)
class _Room:
    typists: Typists
    timer: asyncio.TimerHandle | None = None


def write_typing(client: Reader, frame: bytes) -> None:
    """Write one ``typing`` frame: the one call site, where its priority class belongs."""
    client.write_frame(frame)


class TypingFanout(Generic[R]):
    """Every room's typists at this gateway; see the module docstring."""

    def __init__(
        self,
        members: Members[R],
        config: TypingConfig,
        *,
        on_left: Callable[[R, str], Awaitable[None]],
    ) -> None:
        self._members = members
        self._config = config
        self.left = on_left
        """A member left the room here (or went away): ``(client, room_id)``."""
        self._rooms: dict[str, _Room] = {}

    def __len__(self) -> int:
        return len(self._rooms)

    def typists(self, room_id: str) -> TypingView:
        """Who types in the room, as a member who does not type sees it."""
        room = self._rooms.get(room_id)
        return room.typists.view() if room is not None else TypingView([], 0)

    def around(self, room_id: str, deliver: Deliver) -> Deliver:
        """The room's subscription: typing signals here, the rest to ``deliver``."""

        def receive(subject: str, data: bytes, headers: Mapping[str, str] | None) -> None:
            if room_kind(subject) == ROOM_TYPING:
                self.heard(room_id, data)
            else:
                deliver(subject, data, headers)

        return receive

    def heard(self, room_id: str, data: bytes) -> None:
        """A signal from the room's typing subject (from any gateway, this one included)."""
        try:
            signal = _signal.decode(data)
        except msgspec.DecodeError:
            signal = None
        if signal is None or signal.room_id != room_id:
            TYPING_HEARD.labels("malformed").inc()
            _log.error("undecodable typing signal: dropped", extra={"room": room_id})
            return
        TYPING_HEARD.labels("start" if signal.typing else "stop").inc()
        room = self._rooms.get(room_id)
        if room is None:
            if not signal.typing:
                return
            c = self._config
            typists = Typists(
                ttl_s=c.ttl_s,
                interval_s=c.interval_s,
                max_names=c.max_names,
                frames_per_s=c.room_frames_per_s,
            )
            room = self._rooms[room_id] = _Room(typists)
        now = asyncio.get_running_loop().time()
        if signal.typing:
            changed = room.typists.start(signal.user_id, signal.email, now)
        else:
            changed = room.typists.stop(signal.user_id)
        if changed:
            self._tick(room_id)

    def message(self, room_id: str, sender: str | None) -> None:
        """The room's stream brought a message from ``sender``: they no longer type."""
        room = self._rooms.get(room_id) if sender is not None else None
        if room is not None and sender is not None and room.typists.stop(sender):
            self._tick(room_id)

    def greet(self, room_id: str, client: R) -> None:
        """A member just made live is told who typed at the last frame (what the others
        see until the next; nothing when nobody did)."""
        room = self._rooms.get(room_id)
        if room is None or not room.typists.last:
            return
        view = room.typists.view(without=client.user_id, shown=room.typists.last)
        if view.count:
            write_typing(client, _frame(client, room_id, view))
            TYPING_FRAMES.inc()
            DELIVERIES.labels("typing").inc()

    def _tick(self, room_id: str) -> None:
        """Expire, send what is due, and set the room's timer for what comes next."""
        room = self._rooms.get(room_id)
        if room is None:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        typists = room.typists
        typists.expire(now)
        if (before := typists.take(now)) is not None:
            self._send(room_id, typists, before)
        due = typists.due(now)
        timer = room.timer
        if due is None:
            if timer is not None:
                timer.cancel()
            del self._rooms[room_id]
            return
        if timer is not None and not timer.cancelled() and timer.when() <= due:
            return  # it wakes in time (a little early at worst: it looks again then)
        if timer is not None:
            timer.cancel()
        room.timer = loop.call_at(due, self._wake, room_id, room)

    def _wake(self, room_id: str, room: _Room) -> None:
        room.timer = None
        self._tick(room_id)

    def _send(self, room_id: str, typists: Typists, before: Shown) -> None:
        """One frame to each live member whose view changed since the last: shared by
        protocol, personal for (former) typists, who are not shown themselves."""
        shared = typists.view()
        shared_changed = shared != typists.view(shown=before)
        frames: dict[str, bytes | None] = {}
        written = 0
        for client in self._members(room_id):
            user_id = client.user_id
            if typists.involves(user_id, before):
                key = f"{client.protocol}:{user_id}"
                if key not in frames:
                    view = typists.view(without=user_id)
                    same = view == typists.view(without=user_id, shown=before)
                    frames[key] = None if same else _frame(client, room_id, view)
            elif not shared_changed:
                continue
            else:
                key = client.protocol
                if key not in frames:
                    frames[key] = _frame(client, room_id, shared)
            frame = frames[key]
            if frame is not None:
                write_typing(client, frame)
                written += 1
        typists.spent(written)
        TYPING_FRAMES.inc(written)
        DELIVERIES.labels("typing").inc(written)


def _frame(client: Reader, room_id: str, view: TypingView) -> bytes:
    return text_frame(client.encode_event("typing", encode(view.payload(room_id))))
