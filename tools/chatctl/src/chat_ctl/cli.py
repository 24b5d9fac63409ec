"""``chatctl``: the operator's entry point.

Every command connects to NATS (``--nats``, else ``$CHATCTL_NATS_URL``, else ``$NATS_URL``)
as the operator identity (its NKey seed from ``--nkey-seed-file``, else
``$CHATCTL_NATS_NKEY_SEED_FILE``, else the seed itself in ``$CHATCTL_NATS_NKEY_SEED``; none:
without authentication), asks the services, prints a table (or JSON with ``--json``) and
exits 0. Anything that
stops it (NATS unreachable, no instance answering, an unknown session) is one line on
stderr, ``chatctl: …``, and exit code 2.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import msgspec
import typer
from nats.aio.client import Client
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from chat_common.chatstate import (
    InboxRequest,
    InboxResponse,
    RoomMembersRequest,
    RoomMembersResponse,
)
from chat_common.schemas import (
    DrainRequest,
    DrainResponse,
    FetchRequest,
    FetchResponse,
    PresenceRequest,
    PresenceResponse,
    RoomsRequest,
    RoomsResponse,
    SessionInfo,
    SessionInfoRequest,
    encode,
)
from chat_common.subjects import gateway_endpoint, history_endpoint, session_endpoint
from chat_ctl.bus import CtlError, RemoteError, connected, gather, login, request
from chat_ctl.history import last_messages, message_changes, replay
from chat_ctl.state import PRESENCE_MAX, present_users, room_members, roster, user_rooms
from chat_ctl.view import (
    changes_table,
    instance_table,
    instances_from_stats,
    messages_table,
    presence_table,
    rooms_table,
    roster_table,
    session_table,
    user_rooms_table,
)

__all__ = ["EXIT_FAILED", "app", "main"]

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
EXIT_FAILED = 2
"""Exit code of every failure ``chatctl`` reports (NATS down, nobody answers, unknown id)."""
_T = TypeVar("_T")

app = typer.Typer(
    help=(
        "Ask the running chat backend about itself: instances, rooms, presence, members, "
        "users' rooms, sessions, history; drain a gateway.\n\n"
        "To start a local stack to try it on, use `chat-stack` (or `make run`)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
_out = Console()
_err = Console(stderr=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@dataclasses.dataclass(frozen=True)
class Target:
    url: str
    timeout: float
    seed_file: Path | None = None


@app.callback()
def _options(
    ctx: typer.Context,
    nats_url: Annotated[
        str,
        typer.Option(
            "--nats",
            envvar=["CHATCTL_NATS_URL", "NATS_URL"],
            show_envvar=True,
            help="NATS server URL (several: comma-separated).",
        ),
    ] = DEFAULT_NATS_URL,
    timeout: Annotated[
        float,
        typer.Option(min=0.1, help="Seconds to wait for NATS to accept us, and for each answer."),
    ] = 2.0,
    nkey_seed_file: Annotated[
        Path | None,
        typer.Option(
            "--nkey-seed-file",
            envvar="CHATCTL_NATS_NKEY_SEED_FILE",
            show_envvar=True,
            dir_okay=False,
            help=(
                "NKey seed of the operator's NATS identity (`make run` prints it); "
                "or the seed itself in $CHATCTL_NATS_NKEY_SEED. None: no authentication."
            ),
        ),
    ] = None,
) -> None:
    ctx.obj = Target(url=nats_url, timeout=timeout, seed_file=nkey_seed_file)


def _run(ctx: typer.Context, work: Callable[[Client, Target], Awaitable[None]]) -> None:
    """Connect, run ``work``, and turn every :class:`CtlError` into one line and exit 2."""
    target: Target = ctx.obj

    async def session() -> None:
        credentials = login(target.seed_file, os.environ.get("CHATCTL_NATS_NKEY_SEED"))
        async with connected(target.url, timeout=target.timeout, credentials=credentials) as nc:
            await work(nc, target)

    try:
        asyncio.run(session())
    except CtlError as exc:
        typer.echo(f"chatctl: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None


def _decode(data: bytes, kind: type[_T]) -> _T:
    try:
        return msgspec.json.decode(data, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CtlError(f"unexpected reply: {exc}") from None


def _print_json(value: Any) -> None:
    _out.out(msgspec.json.format(msgspec.json.encode(value), indent=2).decode(), highlight=False)


async def _ask(
    nc: Client, target: Target, subject: str, req: msgspec.Struct, kind: type[_T], *, what: str
) -> _T:
    """One request to a service endpoint, its reply decoded as ``kind``."""
    reply = await request(nc, subject, encode(req), timeout=target.timeout, what=what)
    return _decode(reply, kind)


def _show(value: Any, table: Callable[[], Any], *, json_out: bool) -> None:
    """Print ``value`` as JSON, or the rich table ``table()`` renders."""
    if json_out:
        _print_json(value)
    else:
        _out.print(table())


@app.command()
def status(
    ctx: typer.Context,
    json_out: JsonOption = False,
    quiet: Annotated[
        float,
        typer.Option(min=0.05, help="Discovery ends after this many seconds without a reply."),
    ] = 0.5,
) -> None:
    """Every running instance of every service ($SRV discovery), with endpoint stats.

    "accepting" is the instance's own readiness flag (false while starting, draining or
    shutting down); an instance that is listed also proved its NATS subscription works.
    Dependency checks (Redis, Postgres) are on each instance's ops port: GET /readyz.
    """

    async def work(nc: Client, target: Target) -> None:
        replies = await gather(nc, "$SRV.STATS", first_s=target.timeout, quiet_s=quiet)
        decoded = []
        for reply in replies:
            try:
                decoded.append(msgspec.json.decode(reply))
            except msgspec.DecodeError:
                continue
        instances = instances_from_stats([d for d in decoded if isinstance(d, dict)])
        if not instances:
            raise CtlError(f"no service instance answered $SRV.STATS on {target.url}")
        if json_out:
            _print_json(instances)
        else:
            _out.print(instance_table(instances))

    _run(ctx, work)


@app.command()
def rooms(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Most rooms to list.")] = 100,
    json_out: JsonOption = False,
) -> None:
    """Rooms with users in them, and how many users each (from the session store)."""

    async def work(nc: Client, target: Target) -> None:
        req = RoomsRequest(limit=limit)
        found = await _ask(
            nc, target, session_endpoint("rooms"), req, RoomsResponse, what="session service"
        )
        _show(found, lambda: rooms_table(found), json_out=json_out)

    _run(ctx, work)


@app.command()
def presence(
    ctx: typer.Context,
    room: Annotated[str, typer.Argument(help="Room id.")],
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Most users to list.")] = 100,
    after: Annotated[
        int | None, typer.Option(min=0, help="Start after this place (a page's next).")
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Who is in ROOM, in join order, with their session ids; a page at a time."""

    async def work(nc: Client, target: Target) -> None:
        req = PresenceRequest(room_id=room, limit=limit, after=after)
        found = await _ask(
            nc, target, session_endpoint("presence"), req, PresenceResponse, what="session service"
        )
        _show(found, lambda: presence_table(found), json_out=json_out)

    _run(ctx, work)


@app.command()
def members(
    ctx: typer.Context,
    room: Annotated[str, typer.Argument(help="Room id.")],
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Most members to list.")] = 100,
    json_out: JsonOption = False,
) -> None:
    """The durable members of ROOM (history): user id, email, role, read watermark and
    unread count, beside their presence (session ids; none: not connected).

    Users present without being members are listed after them (when every member is).
    """

    async def work(nc: Client, target: Target) -> None:
        async def ask_members(req: RoomMembersRequest) -> RoomMembersResponse:
            subject = history_endpoint("room_members")
            return await _ask(nc, target, subject, req, RoomMembersResponse, what="history service")

        async def ask_presence(req: PresenceRequest) -> PresenceResponse:
            subject = session_endpoint("presence")
            return await _ask(nc, target, subject, req, PresenceResponse, what="session service")

        head = await _ask(
            nc,
            target,
            history_endpoint("fetch"),
            FetchRequest(room_id=room, limit=1, replica_ok=True),
            FetchResponse,
            what="history service",
        )
        found, count = await room_members(ask_members, room, limit=limit)
        present, total = await present_users(ask_presence, room, limit=PRESENCE_MAX)
        shown = roster(room, found, count, present, total, last_seq=head.last_seq)
        _show(shown, lambda: roster_table(shown), json_out=json_out)

    _run(ctx, work)


@app.command("user-rooms")
def user_rooms_command(
    ctx: typer.Context,
    user_id: Annotated[
        str,
        typer.Argument(
            metavar="USER_ID", help="The user: the token's sub (JWT mode), else the email."
        ),
    ],
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Most rooms to list.")] = 100,
    json_out: JsonOption = False,
) -> None:
    """The rooms USER_ID is a member of, most recently active first, with their role, read
    watermark, last seq and unread count (history's inbox)."""

    async def work(nc: Client, target: Target) -> None:
        async def ask(req: InboxRequest) -> InboxResponse:
            subject = history_endpoint("inbox")
            return await _ask(nc, target, subject, req, InboxResponse, what="history service")

        found = await user_rooms(ask, user_id, limit=limit)
        _show(found, lambda: user_rooms_table(found), json_out=json_out)

    _run(ctx, work)


@app.command()
def session(
    ctx: typer.Context,
    session_id: Annotated[str, typer.Argument(metavar="ID", help="Session id.")],
    json_out: JsonOption = False,
) -> None:
    """One session: its user, rooms, the gateway holding it (or detached) and its expiry.

    Resume tokens are never shown (the store keeps only their hash, and not even that is
    sent here).
    """

    async def work(nc: Client, target: Target) -> None:
        req = SessionInfoRequest(session_id=session_id)
        try:
            info = await _ask(
                nc, target, session_endpoint("inspect"), req, SessionInfo, what="session service"
            )
        except RemoteError as exc:
            if exc.code == "NOT_FOUND":
                raise CtlError(f"unknown session {session_id} (expired or never existed)") from None
            raise
        _show(info, lambda: session_table(info, now_ms=int(time.time() * 1000)), json_out=json_out)

    _run(ctx, work)


@app.command()
def history(
    ctx: typer.Context,
    room: Annotated[str, typer.Argument(help="Room id.")],
    export: Annotated[
        Path | None,
        typer.Option(
            "--export",
            metavar="FILE.jsonl",
            dir_okay=False,
            help="Write every event (messages and changes to them, as stored) from the first"
            " to the current last, one JSON per line.",
        ),
    ] = None,
    last: Annotated[int, typer.Option(min=1, help="Without --export: how many to show.")] = 20,
    page: Annotated[
        int, typer.Option(min=1, help="Messages per fetch (at most HISTORY_MAX_PAGE).")
    ] = 200,
    json_out: JsonOption = False,
) -> None:
    """The last messages of ROOM as they are now (edits, deletes and reactions applied), or
    (--export) all its events to a JSON-lines file."""

    async def work(nc: Client, target: Target) -> None:
        async def fetch(req: FetchRequest) -> FetchResponse:
            subject = history_endpoint("fetch")
            return await _ask(nc, target, subject, req, FetchResponse, what="history service")

        if export is not None:
            written = await _export(fetch, room, export, page=page)
            typer.echo(f"wrote {written} event(s) of {room} to {export}", err=True)
            return
        messages, head = await last_messages(fetch, room, count=last, page=page)
        if json_out:
            for message in messages:
                _out.out(encode(message).decode(), highlight=False)
        else:
            _out.print(messages_table(room, messages, last_seq=head))

    _run(ctx, work)


@app.command()
def changes(
    ctx: typer.Context,
    room: Annotated[str, typer.Argument(help="Room id.")],
    seq: Annotated[int, typer.Argument(min=1, help="The message's seq.")],
    json_out: JsonOption = False,
) -> None:
    """The message at SEQ in ROOM as it is now, and its history of changes (each edit with
    its text, the delete, every reaction added or taken back), in seq order."""

    async def work(nc: Client, target: Target) -> None:
        async def fetch(req: FetchRequest) -> FetchResponse:
            subject = history_endpoint("fetch")
            return await _ask(nc, target, subject, req, FetchResponse, what="history service")

        now = await fetch(FetchRequest(room_id=room, before_seq=seq + 1, limit=1, replica_ok=True))
        message = next((m for m in now.messages if m.seq == seq), None)
        found = await message_changes(fetch, room, seq)
        if json_out:
            _print_json({"message": message, "changes": found})
        else:
            _out.print(changes_table(message, found, target=seq))

    _run(ctx, work)


async def _export(
    fetch: Callable[[FetchRequest], Awaitable[FetchResponse]], room: str, path: Path, *, page: int
) -> int:
    """Write the room to ``path`` (via ``path.partial``, renamed once complete)."""
    partial = path.with_name(path.name + ".partial")
    written = 0
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    try:
        with partial.open("wb") as out, Progress(*columns, console=_err) as progress:
            task = progress.add_task(f"export {room}", total=None)
            async for head, messages in replay(fetch, room, page=page):
                progress.update(task, total=head)
                out.write(b"".join(encode(m) + b"\n" for m in messages))
                written += len(messages)
                progress.update(task, completed=messages[-1].seq)
        partial.replace(path)
    except OSError as exc:
        raise CtlError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    return written


@app.command()
def drain(
    ctx: typer.Context,
    gateway: Annotated[str, typer.Argument(help="Gateway instance id (see `chatctl status`).")],
    period: Annotated[
        float, typer.Option(min=0, max=3600, help="Seconds over which to spread the closes.")
    ] = 10.0,
    json_out: JsonOption = False,
) -> None:
    """Drain one gateway so its clients move to the others.

    The gateway reports not ready, stops accepting connections, and closes its clients with
    1012 in small batches over --period (they reconnect elsewhere and resume their
    sessions). It keeps running; restart it to take it back into service.
    """

    async def work(nc: Client, target: Target) -> None:
        reply = await request(
            nc,
            gateway_endpoint(gateway, "drain"),
            encode(DrainRequest(period_s=period)),
            timeout=period + 60.0,
            what=f"gateway instance {gateway!r}",
        )
        done = _decode(reply, DrainResponse)
        if json_out:
            _print_json(done)
        else:
            typer.echo(
                f"{done.instance}: closed {done.closed} client(s) with 1012 over "
                f"{done.period_s:g}s; it no longer accepts connections (restart it to undo)."
            )

    _run(ctx, work)


def main() -> None:
    """Console entry point ``chatctl``."""
    app(prog_name="chatctl")
