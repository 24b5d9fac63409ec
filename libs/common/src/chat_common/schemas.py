"""Message schemas shared over NATS: the contract between gateway, session and history.

All structs encode to JSON with camelCase keys (``roomId``), the same spelling clients see.
"""

from __future__ import annotations

from typing import Annotated, TypeVar

import msgspec

from chat_common.errors import InvalidArgument

__all__ = [
    "EMAIL_PATTERN",
    "MAX_SEQ",
    "ROOM_ID_CHARS",
    "ROOM_ID_PATTERN",
    "TEXT_PATTERN",
    "AppendBatchRequest",
    "AppendBatchResponse",
    "AppendRequest",
    "AppendResult",
    "DetachRequest",
    "DisconnectRequest",
    "DisconnectResponse",
    "DrainRequest",
    "DrainResponse",
    "Email",
    "FetchRequest",
    "FetchResponse",
    "HeartbeatRequest",
    "HeartbeatResponse",
    "JoinRequest",
    "JoinResponse",
    "LeaveRequest",
    "LeaveResponse",
    "Message",
    "MessageText",
    "PresenceEvent",
    "PresenceRequest",
    "PresenceResponse",
    "PresentUser",
    "Reaction",
    "RestoreRequest",
    "ResumeRequest",
    "ResumeResponse",
    "RoomEvent",
    "RoomId",
    "RoomMessage",
    "RoomMessages",
    "RoomSummary",
    "RoomsRequest",
    "RoomsResponse",
    "Seq",
    "SessionInfo",
    "SessionInfoRequest",
    "TakeRequest",
    "TakeResponse",
    "TakeoverNotice",
    "TypingSignal",
    "Wire",
    "decode",
    "encode",
    "parse_request",
    "parse_value",
]

ROOM_ID_CHARS = r"[A-Za-z0-9_-]{1,64}"
"""Room ids become one NATS subject token: no dots, wildcards, whitespace or ``$``."""
ROOM_ID_PATTERN = rf"^{ROOM_ID_CHARS}\Z"
EMAIL_PATTERN = r"^[^\s@\x00-\x1f\x7f]{1,64}@[^\s@\x00-\x1f\x7f]{1,190}\Z"
"""No whitespace, no control characters, one ``@``."""
TEXT_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*\Z"
"""Message text: any Unicode but the C0 control characters other than tab, line feed and
carriage return, and DEL (NUL cannot be stored; the rest only ever hides or spoofs)."""
MAX_SEQ = 2**63 - 1
"""The largest seq (a Postgres ``bigint``)."""

RoomId = Annotated[str, msgspec.Meta(pattern=ROOM_ID_PATTERN)]
Email = Annotated[str, msgspec.Meta(pattern=EMAIL_PATTERN, max_length=254)]
MessageText = Annotated[str, msgspec.Meta(pattern=TEXT_PATTERN)]
Seq = Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)]
_T = TypeVar("_T")


class Wire(msgspec.Struct, rename="camel", kw_only=True, frozen=True):
    """Base of every wire struct, between services and from clients: camelCase names,
    keyword-only, immutable; unknown fields are ignored, known ones type-checked strictly."""


class Reaction(Wire, frozen=True, omit_defaults=True):
    """One emoji's reactions to a message: how many users, and whether the reader is one."""

    emoji: str
    count: int
    me: bool = False


class Message(Wire, frozen=True, omit_defaults=True):
    """One stored room event, exactly as clients receive it: a chat message, or a change
    to one (:mod:`chat_common.changes`).

    A plain message encodes as it always did (the fields below ``client_msg_id`` are left
    out at their defaults: ``omit_defaults`` compares by identity, hence ``kind`` ``None``
    rather than ``"message"``). A change has a ``kind`` (``edit``, ``delete``, ``react``,
    ``unreact``) and the ``target`` seq of the message it changes; an edit's ``text`` is the
    new text, a reaction's ``emoji`` its emoji. A message *as it is now* (scroll-back and
    join pages) carries ``editedAt``, ``deleted`` (its text then empty) and ``reactions``.
    """

    id: str
    room_id: str
    seq: int
    email: str
    text: str
    ts: str
    client_msg_id: str | None
    kind: str | None = None
    """``None`` for a message (so that it encodes as before), else the change's kind."""
    target: int | None = None
    emoji: str | None = None
    edited_at: str | None = None
    deleted: bool = False
    reactions: list[Reaction] | None = None


class JoinRequest(Wire, frozen=True):
    session_id: str
    gateway_id: str
    email: Email
    room_id: RoomId
    token_hash: str
    """sha256 hex of the session's resume token (the token itself never leaves the gateway)."""
    sid: str
    """The public socket id the client knows this session by."""
    join_position: int = msgspec.field(name="position")
    """The room's last seq included in the join's history (``position`` on the bus)."""
    conn: str
    """The connection holding the session now (a resume moves it to a new one)."""
    op: int = 0
    """This join's number among the connection's joins and leaves (from 1): one that
    arrives after a later one is refused (0: not numbered)."""


class JoinResponse(Wire, frozen=True):
    users: list[str]
    """The room's first users in join order (all of them when ``next`` is ``None``)."""
    first: bool
    count: int
    """How many users the room has."""
    next: int | None = None
    """``after`` of the :class:`MembersRequest` for the users after ``users``."""


class LeaveRequest(Wire, frozen=True):
    session_id: str
    room_id: RoomId
    conn: str = ""
    """The connection asking; with ``op``, only the one holding the session is heard."""
    op: int = 0
    """As :attr:`JoinRequest.op` (0: not numbered)."""


class LeaveResponse(Wire, frozen=True):
    last: bool
    count: int


class MembersRequest(Wire, frozen=True):
    """A page of a room's users in join order (``get_members``)."""

    room_id: RoomId
    after: int | None = None
    """The ``next`` of the page before (``None``: from the first user)."""
    limit: int = 100


class MembersResponse(Wire, frozen=True):
    users: list[str]
    count: int
    next: int | None


class DisconnectRequest(Wire, frozen=True):
    session_id: str
    conn: str | None = None
    """Only if this connection still holds the session (``None``: unconditionally)."""


class DisconnectResponse(Wire, frozen=True):
    rooms: list[str]


class DetachRequest(Wire, frozen=True):
    """The connection dropped: keep the session resumable for the resume window."""

    session_id: str
    conn: str
    """Ignored unless this connection still holds the session."""


class ResumeRequest(Wire, frozen=True):
    session_id: str
    token: str
    gateway_id: str
    conn: str
    email: str | None = None
    """When set (an authenticated connection), the session must belong to this email."""


class ResumeResponse(Wire, frozen=True):
    email: str
    sid: str
    rooms: dict[str, int]
    """room -> the last seq the session is known to have (its join position)."""


class TakeoverNotice(Wire, frozen=True):
    """Sent to a gateway whose connection lost its session to a resume elsewhere."""

    session_id: str
    conn: str


class TakeRequest(Wire, frozen=True):
    """Lease up to ``count`` tokens from a user's shared rate-limit bucket."""

    email: str
    count: int


class TakeResponse(Wire, frozen=True):
    granted: int
    retry_after_ms: int


class HeartbeatRequest(Wire, frozen=True):
    gateway_id: str
    session_ids: list[str]


class HeartbeatResponse(Wire, frozen=True):
    unknown: list[str]
    """Sessions the store does not know (Redis wiped, or reaped): re-register them."""


class RestoreRequest(Wire, frozen=True):
    """Re-register a live session after the store lost it; announces nothing."""

    session_id: str
    gateway_id: str
    email: Email
    token_hash: str
    sid: str
    rooms: dict[str, int]
    conn: str


class AppendRequest(Wire, frozen=True):
    room_id: RoomId
    email: Email
    text: MessageText
    client_msg_id: str
    client_supplied: bool = True
    """False when the gateway generated ``client_msg_id`` (the message then shows null)."""
    received_at: float | None = None
    """Epoch seconds when the sender's gateway received the event (end-to-end latency)."""
    sender: str | None = None
    """The sender's user id (:data:`chat_common.chatstate.UserId`): sending moves their read
    watermark to the message, and ``client_msg_id`` is unique per sender and room. ``None``
    from a gateway that predates user ids: history then takes ``email`` as the sender (a
    user id in development mode)."""
    kind: str = "message"
    """``message``, or a change to the message at ``target`` (:mod:`chat_common.changes`):
    ``edit`` (``text`` is the new text), ``delete`` (``text`` empty), ``react`` and
    ``unreact`` (``text`` is the emoji)."""
    target: Seq | None = None
    """The seq of the message a change is to (``None`` for a message)."""


class AppendBatchRequest(Wire, frozen=True):
    """Appends from one gateway, committed together in one transaction (all or none), in
    this order: each sender's messages get their room's seqs in the order listed.

    ``items`` are :class:`AppendRequest` JSON, each decoded on its own so that one bad
    item is refused alone."""

    items: list[msgspec.Raw]


class ItemError(Wire, frozen=True):
    code: str
    message: str


_NULL = msgspec.Raw(b"null")


class AppendResult(Wire, frozen=True):
    """One item's outcome: the stored :class:`Message` (its JSON, exactly the bytes room
    members receive) or why it was refused."""

    message: msgspec.Raw = _NULL
    """``null`` when refused (a raw value cannot sit in a union with ``None``)."""
    error: ItemError | None = None

    @property
    def stored(self) -> bytes | None:
        """The stored message's JSON, or ``None``."""
        raw = bytes(self.message)
        return None if raw == b"null" else raw


class AppendBatchResponse(Wire, frozen=True):
    results: list[AppendResult]
    """One per request item, in the same order."""


class FetchRequest(Wire, frozen=True):
    room_id: RoomId
    before_seq: Seq | None = None
    after_seq: Seq | None = None
    limit: int = 50
    replica_ok: bool = False
    """The page may come from a standby and lag the primary by a moment (scroll-back,
    exports). Joins, gap fills and resume replays leave it ``False``: their page must be as
    new as the live stream."""
    viewer: str | None = None
    """The reader's user id: a reaction's ``me`` says whether they are among its users."""
    target: Seq | None = None
    """Operators (``chatctl changes``): the changes to the message at this seq, as
    stored, in seq order after ``after_seq`` (or from the first), instead of a page."""


class FetchResponse(Wire, frozen=True):
    """With ``after_seq``: the room's *events* after it, as stored (messages and changes,
    each once, in seq order; what the live stream carried). Otherwise the room's messages
    *as they are now* (changes applied: ``editedAt``, ``deleted``, ``reactions``), and no
    change events."""

    messages: list[Message]
    last_seq: int


class PresenceEvent(Wire, frozen=True, omit_defaults=True):
    """``user_joined`` / ``user_left``: who, and how many users the room has now; a small
    room's events also carry its whole member list (``users``), a large room's do not."""

    room_id: str
    email: str
    count: int
    users: list[str] | None = None


class RoomEvent(Wire, frozen=True):
    """What travels on a room's presence subject (``chat.room.<room>.presence``).

    ``data`` stays raw JSON so that a gateway can splice it into client frames without
    decoding and re-encoding it. Presence has no ``seq`` (an event with one is refused);
    messages travel as :class:`RoomMessages` on the room's message subject.
    """

    event: str
    data: msgspec.Raw
    seq: int | None = None
    received_at: float | None = msgspec.field(default=None, name="sentAt")


class RoomMessage(Wire, frozen=True, omit_defaults=True):
    seq: int
    data: msgspec.Raw
    """The :class:`Message` JSON, spliced into client frames as it is."""
    received_at: float | None = msgspec.field(default=None, name="sentAt")
    """When the sender's gateway received it (epoch seconds; ``sentAt`` on the bus)."""
    sender: str | None = None
    """The sender's user id (for inbox followers: their own message is read)."""
    kind: str | None = None
    """The event's kind (:attr:`Message.kind`, ``None`` for a message): gateways name
    client events by it, and count unread messages by it, without decoding ``data``."""
    target: int | None = None
    """A change's target seq (:attr:`Message.target`)."""


class RoomMessages(Wire, frozen=True):
    """What travels on a room's message subject (``chat.room.<room>.events``): the
    messages of the room that one commit stored, in seq order (one publish per room per
    commit, decoded once per gateway)."""

    messages: list[RoomMessage]


class TypingSignal(Wire, frozen=True):
    """What travels on a room's typing subject (``chat.room.<room>.typing``): a user started
    (or is still) typing, or stopped. Published by the typist's gateway, fire and forget;
    never stored, never replayed, and never the text being typed."""

    room_id: str
    user_id: str
    email: str
    """What the room's members are shown (the name presence shows)."""
    typing: bool
    gateway: str
    """The publishing gateway's instance id."""


# Operator queries (``chatctl``): bounded, read-only views of the session store.


class RoomsRequest(Wire, frozen=True):
    limit: int = 100


class RoomSummary(Wire, frozen=True):
    room_id: str
    users: int
    """Distinct users present (a user with several connections counts once)."""


class RoomsResponse(Wire, frozen=True):
    rooms: list[RoomSummary]
    """Rooms with at least one user, by room id; the first ``limit`` the scan found."""
    truncated: bool
    """More rooms exist than ``limit``."""


class PresenceRequest(Wire, frozen=True):
    room_id: RoomId
    limit: int = 100
    after: int | None = None
    """The ``next`` of the page before (``None``: from the first user)."""


class PresentUser(Wire, frozen=True):
    email: str
    sessions: list[str]
    """Ids of this user's sessions in the room (never their resume tokens)."""


class PresenceResponse(Wire, frozen=True):
    room_id: str
    users: list[PresentUser]
    """In join order, at most ``limit``."""
    total: int
    next: int | None = None
    """``after`` for the next page, when there are more users."""


class SessionInfoRequest(Wire, frozen=True):
    session_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class SessionInfo(Wire, frozen=True):
    """One session as an operator may see it: no token, no token hash."""

    session_id: str
    email: str
    sid: str
    state: str
    """``attached`` (a gateway holds its connection) or ``detached`` (resumable)."""
    gateway: str
    """The gateway instance holding it; empty when detached."""
    rooms: dict[str, int]
    expires_at_ms: int | None
    """When the reaper may end it (epoch ms); heartbeats move it forward while attached."""


class DrainRequest(Wire, frozen=True):
    """Ask one gateway to close its clients (1012) in small batches over ``period_s``."""

    period_s: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 10.0


class DrainResponse(Wire, frozen=True):
    instance: str
    closed: int
    """Clients this drain closed with 1012."""
    period_s: float


_encoder = msgspec.json.Encoder()


def encode(obj: object) -> bytes:
    """Encode a struct (or plain JSON value) to JSON bytes."""
    return _encoder.encode(obj)


def decode(data: bytes, kind: type[_T]) -> _T:
    """Decode JSON bytes into ``kind``; raises ``msgspec.ValidationError``/``DecodeError``."""
    return msgspec.json.decode(data, type=kind)


def parse_request(data: bytes, kind: type[_T]) -> _T:
    """Decode a request body; any decode or validation failure is ``INVALID_ARGUMENT``."""
    try:
        return msgspec.json.decode(data, type=kind)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise InvalidArgument(_detail(exc)) from None


def parse_value(data: object, kind: type[_T]) -> _T:
    """Convert a decoded JSON object (a client event's payload) into ``kind``; anything else
    is ``INVALID_ARGUMENT``."""
    if not isinstance(data, dict):
        raise InvalidArgument("payload must be an object")
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as exc:
        raise InvalidArgument(_detail(exc)) from None


def _detail(exc: msgspec.MsgspecError) -> str:
    """What was wrong and where, for the error answer. msgspec's messages name the
    expectation and the path ("... - at `$.roomId`"), never the value; the regex of a
    pattern is left out to keep them short."""
    head, _, path = str(exc).partition(" - at ")
    if "matching regex" in head:
        head = "Invalid characters" if path.endswith(".text`") else "Invalid format"
    return f"{head} at {path.replace('$.', '')}" if path else head
