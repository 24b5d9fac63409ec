"""Whole messages out of the frames a WebSocket parser gives (pure).

A message may arrive in fragments (a first frame without FIN, then continuation frames);
:class:`Reassembly` joins them, counts what each batch of frames costs against the read
budget (one token per frame, plus one per ``BYTES_PER_TOKEN`` of payload: control frames
count too), and notes whether a pong came.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from websockets.frames import Frame, Opcode

__all__ = ["BYTES_PER_TOKEN", "Read", "Reassembly"]

BYTES_PER_TOKEN = 8192
"""A frame costs one token of the read budget, plus one per this many payload bytes."""


@dataclass(slots=True)
class Read:
    """What one batch of frames brought."""

    messages: list[tuple[bytes, bool]] = field(default_factory=list)
    """Whole messages in order: (payload, whether it is text)."""
    cost: int = 0
    """Tokens of the read budget the frames cost."""
    ponged: bool = False


class Reassembly:
    """The fragments of the message being received, if any."""

    __slots__ = ("_parts", "_text")

    def __init__(self) -> None:
        self._parts: list[bytes] | None = None
        self._text = False

    def read(self, events: Iterable[object]) -> Read:
        """Take the parser's events (frames; anything else is ignored)."""
        out = Read()
        for frame in events:
            if not isinstance(frame, Frame):
                continue  # handshake events: not in an already open protocol
            out.cost += 1 + len(frame.data) // BYTES_PER_TOKEN
            opcode = frame.opcode
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                if frame.fin:
                    out.messages.append((bytes(frame.data), opcode is Opcode.TEXT))
                else:
                    self._parts, self._text = [bytes(frame.data)], opcode is Opcode.TEXT
            elif opcode is Opcode.CONT and self._parts is not None:
                self._parts.append(bytes(frame.data))
                if frame.fin:
                    out.messages.append((b"".join(self._parts), self._text))
                    self._parts = None
            elif opcode is Opcode.PONG:
                out.ponged = True
        return out

    def reset(self) -> None:
        self._parts = None
