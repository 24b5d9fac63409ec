"""The bus is closed: NATS refuses clients without credentials, and each identity outside
its own subjects (chat_common.buspermissions; docs/security.md, "The bus").

The finding these tests answer: a NATS client with no credentials published a forged
``new_message`` and a forged ``user_left`` on a room's subject, both reached the room's
members, and a direct request to ``chat.history.append`` stored a message as someone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import msgspec
import nats
import nats.errors
import pytest

from chat_common.buscredentials import new_user_key, write_seed
from chat_common.subjects import user_events
from chat_devstack.servers import NatsServer
from chat_devstack.stack import Stack, StackConfig
from tests.conftest import FAST_SETTINGS, MakeStack, Servers
from tests.support.bus import Refusals, connect_as
from tests.support.clients import NativeClient, unique_room

pytestmark = pytest.mark.integration

MALLORY = "mallory@example.com"


def _forged_message(room: str, seq: int) -> bytes:
    message = {"id": uuid.uuid4().hex, "roomId": room, "seq": seq, "email": "bob@example.com",
               "text": "forged", "ts": "2026-01-01T00:00:00.000Z", "clientMsgId": None}  # fmt: skip
    return msgspec.json.encode({"messages": [{"seq": seq, "data": message}]})


def _forged_message_event(room: str, seq: int) -> bytes:
    """A message dressed as a single event (the shape presence takes)."""
    message = msgspec.json.decode(_forged_message(room, seq))["messages"][0]["data"]
    return msgspec.json.encode({"event": "new_message", "data": message, "seq": seq})


def _forged_left(room: str, email: str) -> bytes:
    data = {"roomId": room, "email": email, "users": []}
    return msgspec.json.encode({"event": "user_left", "data": data})


def _forged_append(room: str) -> bytes:
    return msgspec.json.encode(
        {"roomId": room, "email": "bob@example.com", "text": "forged append",
         "clientMsgId": uuid.uuid4().hex}
    )  # fmt: skip


async def _anonymous(url: str, **options: Any) -> nats.aio.client.Client:
    """A client with no credentials at all (or, via ``options``, someone else's)."""
    refusals = Refusals()
    return await nats.connect(
        url,
        allow_reconnect=False,
        max_reconnect_attempts=1,
        reconnect_time_wait=0.05,
        connect_timeout=2,
        error_cb=refusals.record,
        **options,
    )


async def _member(stack: Stack, room: str, email: str = "ann@example.com") -> NativeClient:
    client = await NativeClient().connect(stack.gateway_urls[0])
    joined = await client.call("join", {"email": email, "roomId": room})
    assert joined["ok"] is True, joined
    return client


async def _settle_and_read(member: NativeClient, room: str) -> list[dict[str, Any]]:
    """Send a real message after the forgeries, wait for it to arrive (anything forged that
    got through was published before it), and return the room's stored messages."""
    sent = await member.call("send_message", {"roomId": room, "text": "real"})
    assert sent["ok"] is True, sent
    await member.wait_for(lambda ev: any(n == "new_message" and d["text"] == "real" for n, d in ev))
    page = await member.call("get_history", {"roomId": room})
    assert page["ok"] is True, page
    messages: list[dict[str, Any]] = page["messages"]
    return messages


async def test_without_credentials_nothing_forged_reaches_a_room(stack: Stack) -> None:
    """A client with no credentials is refused at connect, so the finding's forged
    new_message and user_left never reach the room, and no append is stored as bob."""
    room = unique_room()
    member = await _member(stack, room)
    refused: Exception | None = None
    try:
        nc = await _anonymous(stack.nats_url)
    except nats.errors.Error as exc:
        refused = exc
    else:  # the open bus of the finding: forge what it forged
        for subject in (f"chat.room.{room}.events", f"chat.room.{room}.presence"):
            await nc.publish(subject, _forged_message(room, 1))
            await nc.publish(subject, _forged_left(room, "ann@example.com"))
        with contextlib.suppress(nats.errors.Error):
            await nc.request("chat.history.append", _forged_append(room), timeout=2)
        await nc.flush()
        await nc.close()
    try:
        stored = await _settle_and_read(member, room)
    finally:
        await member.close()
    assert refused is not None and "authorization violation" in str(refused).lower()
    assert [m["text"] for m in member.of("new_message")] == ["real"]
    assert member.of("user_left") == []
    assert [(m["email"], m["text"]) for m in stored] == [("ann@example.com", "real")]


async def test_unknown_or_wrong_credentials_are_refused(stack: Stack, tmp_path: Path) -> None:
    """A key the server does not list is refused, and so is a token or a user/password."""
    stranger = new_user_key()
    write_seed(tmp_path / "stranger.nk", stranger)
    attempts: list[dict[str, Any]] = [
        {"nkeys_seed": str(tmp_path / "stranger.nk")},
        {"token": "guess"},
        {"user": "gateway", "password": "gateway"},
    ]
    outcomes = []
    for options in attempts:
        try:
            nc = await _anonymous(stack.nats_url, **options)
        except nats.errors.Error as exc:
            outcomes.append(str(exc))
        else:
            await nc.close()
            outcomes.append("connected")
    assert all("authorization violation" in o.lower() for o in outcomes), outcomes


# What each identity must never do (the policy, written out here rather than read back from
# the table it tests): publishes, then subscriptions. "R" is replaced by a room id, "G" by
# a gateway id, "U" by a user token.
FORBIDDEN: dict[str, tuple[list[str], list[str]]] = {
    "gateway": (
        ["chat.room.R.events", "chat.room.R.presence", "chat.gateway.G.control",
         "chat.session.inspect", "chat.session.rooms", "_INBOX.operator.x", "$JS.API.INFO",
         "chat.history.append", "chat.user.U.events", "chat.history.room_members"],
        ["chat.history.append", "chat.session.join", "_INBOX.>", "_INBOX.operator.>", ">",
         "chat.history.mark_read"],
    ),
    "session": (
        ["chat.room.R.events", "chat.history.append", "chat.history.append_batch",
         "chat.gateway.G.drain", "chat.session.join", "_INBOX.gateway.x",
         "chat.user.U.events", "chat.history.member_join", "chat.room.R.typing"],
        ["chat.room.R.events", "chat.room.*.presence", "chat.history.append", "_INBOX.>",
         "chat.user.*.events"],
    ),
    "history": (
        ["chat.room.R.presence", "chat.gateway.G.control", "chat.session.join",
         "chat.history.append", "_INBOX.gateway.x", "chat.room.R.typing"],
        ["chat.room.R.events", "chat.session.*", "chat.gateway.*.control", "_INBOX.>",
         "chat.user.*.events"],
    ),
    "operator": (
        ["chat.room.R.events", "chat.room.R.presence", "chat.history.append",
         "chat.history.append_batch", "chat.session.join", "chat.session.leave", "chat.gateway.G.control", "$JS.API.INFO",
         "chat.history.member_join", "chat.history.member_leave", "chat.history.mark_read",
         "chat.history.user_events", "chat.user.U.events", "chat.room.R.typing"],
        ["chat.room.R.events", "chat.room.*.*", "chat.session.*", "chat.history.fetch",
         "_INBOX.>", ">", "chat.user.*.events"],
    ),
}  # fmt: skip


@pytest.mark.parametrize("identity", sorted(FORBIDDEN))
async def test_each_identity_is_refused_outside_its_subjects(stack: Stack, identity: str) -> None:
    """Every forbidden publish and subscription of an identity is refused by the server (a
    permissions violation reported to the client), and nothing published reaches a room."""
    room = unique_room()
    member = await _member(stack, room)
    refusals = Refusals()
    nc = await connect_as(stack.nats_url, stack.nats_seed_files, identity, refusals=refusals)
    publishes, subscriptions = FORBIDDEN[identity]
    publishes = [s.replace("R", room, 1) if ".R." in s else s for s in publishes]
    publishes = [s.replace(".G.", ".gateway-1.").replace(".U.", ".0f3a.") for s in publishes]
    try:
        for subject in publishes:
            payload = _forged_left(room, "ann@example.com")
            if subject.endswith(".events"):
                payload = _forged_message(room, 1)
            elif subject == "chat.history.append":
                payload = _forged_append(room)
            await nc.publish(subject, payload, reply=f"_INBOX.{identity}.x")
        for subject in subscriptions:
            await nc.subscribe(subject.replace(".R.", f".{room}."))
        await nc.flush()
        refused = {
            subject: await refusals.wait_for(f'violation for publish to "{subject}"')
            for subject in publishes
        }
        refused |= {
            subject: await refusals.wait_for(
                f'violation for subscription to "{subject.replace(".R.", f".{room}.")}"'
            )
            for subject in subscriptions
        }
        stored = await _settle_and_read(member, room)
    finally:
        await nc.close()
        await member.close()
    assert set(refused) == {*publishes, *subscriptions}
    assert [m["text"] for m in member.of("new_message")] == ["real"]
    assert member.of("user_left") == []
    assert [m["text"] for m in stored] == ["real"]


async def test_the_gateway_identity_cannot_forge_room_events(stack: Stack) -> None:
    """With the gateway's own credentials (which may request chat.history.append_batch), forged
    new_message and user_left events are refused and never reach the room's members."""
    room = unique_room()
    member = await _member(stack, room)
    other = await _member(stack, room, "bob@example.com")
    refusals = Refusals()
    nc = await connect_as(stack.nats_url, stack.nats_seed_files, "gateway", refusals=refusals)
    try:
        await nc.publish(f"chat.room.{room}.events", _forged_message(room, 2))
        await nc.publish(f"chat.room.{room}.presence", _forged_left(room, "bob@example.com"))
        await nc.flush()
        events = await refusals.wait_for(f'publish to "chat.room.{room}.events"')
        presence = await refusals.wait_for(f'publish to "chat.room.{room}.presence"')
        await _settle_and_read(member, room)
    finally:
        await nc.close()
        await member.close()
        await other.close()
    assert "permissions violation" in events.lower() and "permissions violation" in presence
    assert [m["text"] for m in member.of("new_message")] == ["real"]
    assert [d["email"] for d in member.of("user_left")] == []


async def test_session_cannot_pass_messages_off_as_presence(stack: Stack) -> None:
    """The session identity may publish on a room's presence subject, but a new_message sent
    there is dropped by the gateway: messages come only from history's subject."""
    room = unique_room()
    member = await _member(stack, room)
    refusals = Refusals()
    nc = await connect_as(stack.nats_url, stack.nats_seed_files, "session", refusals=refusals)
    try:
        await nc.publish(f"chat.room.{room}.presence", _forged_message(room, 1))
        await nc.publish(f"chat.room.{room}.presence", _forged_message_event(room, 1))
        await nc.flush()
        await _settle_and_read(member, room)
    finally:
        await nc.close()
        await member.close()
    assert refusals.errors == []
    assert [m["text"] for m in member.of("new_message")] == ["real"]


async def test_history_speaks_on_a_users_stream_to_the_gateway_identity(stack: Stack) -> None:
    """With the gateway's credentials, a durable join is answered by history, and its
    membership event, published by history after COMMIT, reaches the gateway identity's
    subscription to the user's stream; no permission is refused on the way."""
    user, room = f"user-{uuid.uuid4().hex[:8]}", unique_room()
    refusals = Refusals()
    nc = await connect_as(stack.nats_url, stack.nats_seed_files, "gateway", refusals=refusals)
    heard: asyncio.Queue[bytes] = asyncio.Queue()

    async def hear(msg: Any) -> None:
        heard.put_nowait(msg.data)

    try:
        await nc.subscribe(user_events(user), cb=hear)
        await nc.flush()
        join = {"userId": user, "email": "ann@example.com", "roomId": room}
        reply = await nc.request("chat.history.member_join", msgspec.json.encode(join), 5)
        async with asyncio.timeout(10):
            event = msgspec.json.decode(await heard.get())
    finally:
        await nc.close()
    assert msgspec.json.decode(reply.data)["created"] is True
    assert (event["userSeq"], event["event"], event["data"]["roomId"]) == (1, "membership", room)
    assert refusals.errors == []


async def test_the_operator_identity_reads_and_drains_only(stack: Stack) -> None:
    """The operator (chatctl) identity gets answers from discovery and the read endpoints
    (a room's durable members among them), and may call drain, but may not append, join or
    publish room events."""
    refusals = Refusals()
    nc = await connect_as(stack.nats_url, stack.nats_seed_files, "operator", refusals=refusals)
    room = unique_room()
    try:
        ping = await nc.request("$SRV.PING.history", b"", timeout=5)
        rooms = await nc.request("chat.session.rooms", b'{"limit": 1}', timeout=5)
        fetch = await nc.request("chat.history.fetch", b'{"roomId": "%s"}' % room.encode(), 5)
        members = await nc.request(
            "chat.history.room_members", b'{"roomId": "%s"}' % room.encode(), 5
        )
        status = await nc.request("chat.gateway.gateway-1.status", b"", timeout=5)
        with pytest.raises(nats.errors.TimeoutError):
            await nc.request("chat.history.append", _forged_append(room), timeout=1)
        refused = await refusals.wait_for('publish to "chat.history.append"')
    finally:
        await nc.close()
    assert msgspec.json.decode(ping.data)["name"] == "history"
    assert not (rooms.headers or {}).get("Nats-Service-Error-Code")
    assert msgspec.json.decode(fetch.data)["messages"] == []
    assert msgspec.json.decode(members.data) == {"members": [], "next": None, "count": 0}
    assert "clients" in msgspec.json.decode(status.data)
    assert "permissions violation" in refused.lower()


async def test_services_without_credentials_run_on_a_nats_without_authorization(
    servers: Servers, tmp_path: Path
) -> None:
    """The documented no-credentials mode: on a NATS without authorization, services given
    no credentials connect anonymously (and say so in their logs), and chat works."""
    nats_server = NatsServer(tmp_path / "nats", auth=False)
    await nats_server.start()
    config = StackConfig(
        data_dir=tmp_path / "stack",
        nats_url=nats_server.url,
        redis_url=servers.redis.url,
        postgres_dsn=await servers.create_database(),
        gateway_port=0,
        extra_env={**FAST_SETTINGS, "SESSION_KEY_PREFIX": f"t{uuid.uuid4().hex[:8]}"},
    )
    try:
        async with Stack(config) as stack:
            room = unique_room()
            member = await _member(stack, room)
            try:
                stored = await _settle_and_read(member, room)
            finally:
                await member.close()
            logs = [s.log_path.read_text() for s in stack.services]
    finally:
        await nats_server.stop()
    assert nats_server.seed_files == {}
    assert [m["text"] for m in stored] == ["real"]
    assert all("no NATS credentials configured" in log for log in logs)


@pytest.mark.parametrize("seed", ["missing", "not a seed"])
async def test_a_service_with_an_unusable_seed_refuses_to_start(
    servers: Servers, tmp_path: Path, seed: str
) -> None:
    """A seed file that is missing or holds no NKey user seed stops the service at once
    (exit 1, one line naming the file), instead of retrying NATS forever."""
    path = tmp_path / "history.nk"
    if seed != "missing":
        path.write_text(seed)
    env = os.environ | {
        "HISTORY_NATS_URL": servers.nats.url,
        "HISTORY_NATS_NKEY_SEED_FILE": str(path),
        "HISTORY_NATS_NKEY_SEED": "",
        "HISTORY_POSTGRES_DSN": servers.postgres.dsn,
    }
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("chat-history")),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert (
        err.decode()
        .splitlines()[-1]
        .startswith(
            f"history: unusable NATS credentials: {'cannot read' if seed == 'missing' else path}"
        )
    )
    assert seed not in err.decode() or seed == "missing"


async def test_a_rotated_key_locks_out_the_old_one_until_the_service_restarts(
    make_stack: MakeStack, tmp_path: Path
) -> None:
    """Rotating history's key (new seed file, NATS reloaded) cuts the connection that used
    the old one and refuses it from then on (the service keeps retrying, not ready); the
    service restarted as the rotation procedure says logs in with the new seed, and chat
    goes on."""
    stack = await make_stack()
    server: NatsServer = stack.test_nats  # type: ignore[attr-defined]
    old = tmp_path / "old-history.nk"
    old.write_text(server.seed_file("history").read_text())
    (history,) = stack.of_kind("history")
    room = unique_room()
    member = await _member(stack, room)
    try:
        server.rotate("history")
        async with asyncio.timeout(20):
            while await history.is_ready():  # noqa: ASYNC110 - a readiness probe, no event
                await asyncio.sleep(0.1)
        refused: Exception | None = None
        try:
            await (await _anonymous(stack.nats_url, nkeys_seed=str(old))).close()
        except nats.errors.Error as exc:
            refused = exc
        await history.terminate(10)
        await history.start()
        await history.wait_ready(timeout=30)
        stored = await _settle_and_read(member, room)
    finally:
        await member.close()
    assert refused is not None and "authorization violation" in str(refused).lower()
    assert [m["text"] for m in stored] == ["real"]
    log = history.log_path.read_text()
    assert "Authorization Violation" in log, "the old key's reconnects were refused"
