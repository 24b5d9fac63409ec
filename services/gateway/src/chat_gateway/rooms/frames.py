"""A room event's frame for one client, built once per kind of client.

Live fan-out (:mod:`chat_gateway.rooms.writer`), resume replays and catch-up pages
(:mod:`chat_gateway.rooms.laggards`) all write through :func:`frame_for`, so a replayed
event is byte for byte what the live one would have been, and a Socket.IO client's offsets
and a native client's seqs follow every seq written to it, whatever path wrote it.
"""

from __future__ import annotations

from collections.abc import Iterable

from chat_gateway.connection.client import Client
from chat_gateway.protocol.wsframe import text_frame
from chat_gateway.rooms.fanout import Fanout

__all__ = ["frame_for", "write_items"]


def frame_for(item: Fanout, client: Client) -> bytes:
    """The frame of ``item`` for ``client``, built once per kind of client (in
    ``item.frames``): per protocol, and for a client whose messages carry offsets once per
    room when it is in that room alone, else its own. A message first moves the client's
    delivered position to it (its offset depends on that position)."""
    rooms = client.rooms
    if item.seq is not None:
        rooms.advance(item.room_id, item.seq)
    offset = item.seq is not None and rooms.offsets
    if offset and not rooms.single_room:
        return text_frame(client.encode_event(item.event, item.data, (rooms.offset(),)))
    kind = "socketio+offset" if offset else client.protocol
    frame = item.frames.get(kind)
    if frame is None:
        extra = (rooms.offset(),) if offset else ()
        frame = item.frames[kind] = text_frame(client.encode_event(item.event, item.data, extra))
    return frame


def write_items(client: Client, items: Iterable[Fanout]) -> int:
    """Write ``items`` to ``client`` in order, whatever its queue (a catch-up page, held
    presence); how many were written."""
    written = 0
    for item in items:
        written += client.write_frame(frame_for(item, client))
    return written
