"""What ``chatctl`` shows (pure): discovery replies in, rows and rich tables out."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
from rich.table import Table
from rich.text import Text

from chat_common.schemas import Message, PresenceResponse, RoomsResponse, SessionInfo
from chat_ctl.state import RoomRoster, UserRooms

__all__ = [
    "Endpoint",
    "Instance",
    "changes_table",
    "describe_expiry",
    "instance_table",
    "instances_from_stats",
    "messages_table",
    "presence_table",
    "rooms_table",
    "roster_table",
    "session_table",
    "user_rooms_table",
]


class Endpoint(msgspec.Struct, frozen=True, rename="camel"):
    name: str
    subject: str
    requests: int
    errors: int
    average_ms: float


class Instance(msgspec.Struct, frozen=True, rename="camel"):
    """One running instance of a service, as its ``$SRV.STATS`` reply describes it."""

    service: str
    instance: str
    id: str
    version: str
    started: str
    accepting: bool | None
    """Whether it wants traffic (``None``: it does not say)."""
    endpoints: list[Endpoint] = msgspec.field(default_factory=list)


def _endpoint(raw: dict[str, Any]) -> tuple[Endpoint, bool | None]:
    data = raw.get("data")
    if not isinstance(data, dict):
        data = {}
    if "requests" in data:
        # Our services count in their request tasks (nats.micro only sees the handoff).
        requests, errors = int(data["requests"]), int(data["errors"])
        average_ms = float(data["averageMs"])
    else:
        requests, errors = int(raw.get("num_requests", 0)), int(raw.get("num_errors", 0))
        average_ms = int(raw.get("average_processing_time", 0)) / 1e6
    accepting = data.get("accepting")
    endpoint = Endpoint(
        name=str(raw.get("name", "")),
        subject=str(raw.get("subject", "")),
        requests=requests,
        errors=errors,
        average_ms=average_ms,
    )
    return endpoint, accepting if isinstance(accepting, bool) else None


def instances_from_stats(replies: list[dict[str, Any]]) -> list[Instance]:
    """One :class:`Instance` per distinct service id, by service then instance name."""
    seen: dict[str, Instance] = {}
    for reply in replies:
        service_id = str(reply.get("id", ""))
        if not service_id or service_id in seen:
            continue
        parsed = [_endpoint(e) for e in reply.get("endpoints") or [] if isinstance(e, dict)]
        flags = {accepting for _, accepting in parsed if accepting is not None}
        metadata = reply.get("metadata") or {}
        seen[service_id] = Instance(
            service=str(reply.get("name", "")),
            instance=str(metadata.get("instance", "")),
            id=service_id,
            version=str(reply.get("version", "")),
            started=str(reply.get("started", "")),
            accepting=all(flags) if flags else None,
            endpoints=[endpoint for endpoint, _ in parsed],
        )
    return sorted(seen.values(), key=lambda i: (i.service, i.instance, i.id))


def _plain(value: str) -> Text:
    """User-supplied text, shown as is (never read as rich markup)."""
    return Text(value)


def _yes_no(flag: bool | None) -> str:
    return {True: "[green]yes[/]", False: "[red]no[/]", None: "?"}[flag]


def instance_table(instances: list[Instance]) -> Table:
    """One row per endpoint, the instance's columns on its first row only."""
    table = Table(title=f"{len(instances)} instance(s)")
    for column in ("service", "instance", "id", "version", "accepting", "endpoint"):
        table.add_column(column)
    for column in ("requests", "errors", "avg ms"):
        table.add_column(column, justify="right")
    for inst in instances:
        head: list[str | Text] = [
            _plain(inst.service),
            _plain(inst.instance),
            inst.id,
            inst.version,
            _yes_no(inst.accepting),
        ]
        for n, ep in enumerate(inst.endpoints or [None]):
            cells = head if n == 0 else [""] * len(head)
            if ep is None:
                table.add_row(*cells, "-", "", "", "")
            else:
                table.add_row(
                    *cells, ep.name, str(ep.requests), str(ep.errors), f"{ep.average_ms:.2f}"
                )
        table.add_section()
    return table


def rooms_table(rooms: RoomsResponse) -> Table:
    title = f"{len(rooms.rooms)} room(s)" + (" (more not shown: raise --limit)" * rooms.truncated)
    table = Table(title=title)
    table.add_column("room")
    table.add_column("users", justify="right")
    for room in rooms.rooms:
        table.add_row(_plain(room.room_id), str(room.users))
    return table


def presence_table(presence: PresenceResponse) -> Table:
    shown = len(presence.users)
    more = f", {presence.total - shown} not shown" if presence.total > shown else ""
    if presence.next is not None:
        more += f" (next page: --after {presence.next})"
    table = Table(title=_plain(f"{presence.room_id}: {presence.total} user(s){more}"))
    table.add_column("user")
    table.add_column("sessions")
    for user in presence.users:
        table.add_row(_plain(user.email), "\n".join(user.sessions))
    return table


def describe_expiry(expires_at_ms: int | None, *, now_ms: int) -> str:
    """``in 27s (01:40:00Z)`` / ``overdue by 3s (…)``: when the reaper may end a session."""
    if expires_at_ms is None:
        return "unknown"
    when = dt.datetime.fromtimestamp(expires_at_ms / 1000, tz=dt.UTC)
    stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    left = round((expires_at_ms - now_ms) / 1000)
    return f"in {left}s ({stamp})" if left >= 0 else f"overdue by {-left}s ({stamp})"


def session_table(info: SessionInfo, *, now_ms: int) -> Table:
    """Never shows a token: :class:`SessionInfo` carries none."""
    table = Table(title=_plain(f"session {info.session_id}"), show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    table.add_row("user", _plain(info.email))
    table.add_row("socket id", _plain(info.sid))
    if info.state == "attached":
        table.add_row("state", _plain(f"attached to {info.gateway or '?'}"))
    else:
        table.add_row("state", _plain(info.state or "?"))
    table.add_row("expires", describe_expiry(info.expires_at_ms, now_ms=now_ms))
    rooms = ", ".join(f"{room} (joined at seq {seq})" for room, seq in sorted(info.rooms.items()))
    table.add_row("rooms", _plain(rooms or "-"))
    return table


def _state(m: Message) -> str:
    """What changed a message, in a few words: edited, deleted, its reactions."""
    parts = ["deleted"] if m.deleted else []
    if m.edited_at is not None:
        parts.append(f"edited {m.edited_at}")
    parts += [f"{r.emoji} {r.count}" for r in m.reactions or ()]
    return ", ".join(parts)


def messages_table(room_id: str, messages: list[Message], *, last_seq: int) -> Table:
    table = Table(title=f"{room_id}: last {len(messages)} message(s), head seq {last_seq}")
    table.add_column("seq", justify="right")
    table.add_column("time")
    table.add_column("user")
    table.add_column("text", overflow="fold")
    table.add_column("changes", overflow="fold")
    for m in messages:
        table.add_row(str(m.seq), m.ts, _plain(m.email), _plain(m.text), _plain(_state(m)))
    return table


def changes_table(message: Message | None, changes: list[Message], *, target: int) -> Table:
    """A message as it is now, then each change to it in seq order."""
    title = f"{message.room_id} seq {target}: " if message else f"seq {target}: "
    table = Table(title=title + (_state(message) or "unchanged" if message else "no message"))
    table.add_column("seq", justify="right")
    table.add_column("time")
    table.add_column("user")
    table.add_column("change")
    table.add_column("text", overflow="fold")
    if message is not None:
        table.add_row(str(message.seq), message.ts, _plain(message.email), "now",
                      _plain(message.text))  # fmt: skip
    for c in changes:
        shown = c.emoji if c.emoji is not None else c.text
        table.add_row(str(c.seq), c.ts, _plain(c.email), c.kind or "", _plain(shown or ""))
    return table


def _not_shown(listed: int, total: int) -> str:
    return f", {total - listed} not shown (raise --limit)" if total > listed else ""


def user_rooms_table(found: UserRooms) -> Table:
    """A user's rooms, most recently active first, with their read state."""
    title = f"{found.user_id}: {found.total} room(s){_not_shown(len(found.rooms), found.total)}"
    table = Table(title=_plain(title))
    table.add_column("room")
    table.add_column("role")
    for column in ("read", "last", "unread"):
        table.add_column(column, justify="right")
    table.add_column("last activity")
    for room in found.rooms:
        table.add_row(
            _plain(room.room_id),
            _plain(room.role),
            str(room.read_seq),
            str(room.last_seq),
            str(room.unread),
            room.last_activity,
        )
    return table


def roster_table(roster: RoomRoster) -> Table:
    """A room's durable members with their read state and sessions; then the users present
    without being members."""
    title = (
        f"{roster.room_id}: {roster.member_count} member(s)"
        f"{_not_shown(sum(r.user_id is not None for r in roster.members), roster.member_count)}"
        f"; {roster.present_count} present"
        f"{'' if roster.presence_complete else ' (sessions shown for the first ones only)'}"
        f"; last seq {roster.last_seq}"
    )
    table = Table(title=_plain(title))
    for column in ("user id", "email", "role"):
        table.add_column(column)
    for column in ("read", "unread"):
        table.add_column(column, justify="right")
    table.add_column("sessions")
    for row in roster.members:
        table.add_row(
            _plain(row.user_id or "-"),
            _plain(row.email),
            _plain(row.role) if row.role else "[yellow]not a member[/]",
            "-" if row.read_seq is None else str(row.read_seq),
            "-" if row.unread is None else str(row.unread),
            "\n".join(row.sessions) or "-",
        )
    return table
