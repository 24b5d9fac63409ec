"""``chatctl`` run as the operator runs it (the installed console script) against real stacks."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import websockets

from chat_common.subjects import gateway_endpoint, history_endpoint, session_endpoint
from chat_devstack.ports import free_port
from chat_devstack.stack import Stack
from chat_history.statehandlers import STATE_ENDPOINTS
from tests.conftest import MakeStack
from tests.support.bus import connect_as
from tests.support.clients import NativeClient, SioClient, unique_room
from tests.support.http import get_json

pytestmark = pytest.mark.integration

CHATCTL = Path(sys.executable).with_name("chatctl")


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, self
        return json.loads(self.out)


async def chatctl(where: Stack | str, *args: str, timeout: float = 60.0) -> Run:
    """Run ``chatctl --nats URL ARGS`` to completion: the stack's NATS, logged in as the
    operator the way ``make run`` tells operators to (``$CHATCTL_NATS_NKEY_SEED_FILE``), or
    a bare URL without credentials."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    for name in ("CHATCTL_NATS_URL", "CHATCTL_NATS_NKEY_SEED_FILE", "CHATCTL_NATS_NKEY_SEED"):
        env.pop(name, None)
    if isinstance(where, Stack):
        env["CHATCTL_NATS_NKEY_SEED_FILE"] = str(where.nats_seed_files["operator"])
    nats_url = where.nats_url if isinstance(where, Stack) else where
    proc = await asyncio.create_subprocess_exec(
        str(CHATCTL),
        "--nats",
        nats_url,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


async def test_status_lists_every_instance(make_stack: MakeStack) -> None:
    """status finds all six instances of a 2+2+2 stack, all accepting, with their endpoints."""
    stack = await make_stack(gateways=2, sessions=2, histories=2)
    found = (await chatctl(stack, "status", "--json", "--quiet", "2")).json()
    assert Counter(i["service"] for i in found) == {"gateway": 2, "session": 2, "history": 2}
    assert {i["instance"] for i in found} == {
        f"{kind}-{n}" for kind in ("gateway", "session", "history") for n in (1, 2)
    }
    assert all(i["accepting"] is True for i in found)
    endpoints = {i["instance"]: {e["name"] for e in i["endpoints"]} for i in found}
    assert {"join", "rooms", "presence", "inspect"} <= endpoints["session-2"]
    assert endpoints["history-1"] == {"append", "append_batch", "fetch", *STATE_ENDPOINTS}
    assert endpoints["gateway-2"] == {"status", "drain"}
    subject_of = {
        "session": lambda _instance, name: session_endpoint(name),
        "history": lambda _instance, name: history_endpoint(name),
        "gateway": gateway_endpoint,
    }
    for i in found:  # each endpoint listens on the subject its name gives
        for e in i["endpoints"]:
            assert e["subject"] == subject_of[i["service"]](i["instance"], e["name"])

    table = await chatctl(stack, "status", "--quiet", "2")
    assert table.code == 0, table
    assert "6 instance(s)" in table.out
    for instance in endpoints:
        assert instance in table.out


async def test_rooms_presence_and_session(stack: Stack) -> None:
    """rooms counts users per room, presence lists them in join order with their session
    ids, and session shows one session attached, then detached, never with its token."""
    lobby, side = unique_room("ctl"), unique_room("ctl")
    ann = await NativeClient().connect(stack.client_url)
    ann2 = await NativeClient().connect(stack.client_url)
    bob = await NativeClient().connect(stack.client_url)
    try:
        joined = await ann.call("join", {"email": "ann@ctl.example", "roomId": lobby})
        assert joined["ok"], joined
        bob_joined = await bob.call("join", {"email": "bob@ctl.example", "roomId": lobby})
        assert bob_joined["ok"], bob_joined
        second = await ann2.call("join", {"email": "ann@ctl.example", "roomId": lobby})
        assert second["ok"], second
        assert (await ann.call("join", {"email": "ann@ctl.example", "roomId": side}))["ok"]

        listed = (await chatctl(stack, "rooms", "--limit", "1000", "--json")).json()
        counts = {r["roomId"]: r["users"] for r in listed["rooms"]}
        assert (counts.get(lobby), counts.get(side)) == (2, 1)

        present = (await chatctl(stack, "presence", lobby, "--json")).json()
        assert present["total"] == 2
        assert [(u["email"], sorted(u["sessions"])) for u in present["users"]] == [
            ("ann@ctl.example", sorted([joined["sessionId"], second["sessionId"]])),
            ("bob@ctl.example", [bob_joined["sessionId"]]),
        ]
        table = await chatctl(stack, "presence", lobby)
        assert table.code == 0 and "ann@ctl.example" in table.out and "2 user(s)" in table.out
        first = (await chatctl(stack, "presence", lobby, "--limit", "1", "--json")).json()
        assert [u["email"] for u in first["users"]] == ["ann@ctl.example"]
        rest = await chatctl(stack, "presence", lobby, "--after", str(first["next"]), "--json")
        assert [u["email"] for u in rest.json()["users"]] == ["bob@ctl.example"]
        assert rest.json()["next"] is None
        paged = await chatctl(stack, "presence", lobby, "--limit", "1")
        assert f"next page: --after {first['next']}" in " ".join(paged.out.split())

        session_id, token = joined["sessionId"], joined["resumeToken"]
        info = (await chatctl(stack, "session", session_id, "--json")).json()
        assert info["email"] == "ann@ctl.example"
        assert (info["state"], info["gateway"]) == ("attached", "gateway-1")
        assert set(info["rooms"]) == {lobby, side}
        assert info["expiresAtMs"] > time.time() * 1000
        shown = await chatctl(stack, "session", session_id)
        assert shown.code == 0 and "attached to gateway-1" in shown.out
        assert token not in shown.out + json.dumps(info)

        assert ann.ws is not None
        await ann.ws.close(1001)  # a drop, not a goodbye: the session stays resumable
        await ann.closed.wait()
        async with asyncio.timeout(20):
            while (await chatctl(stack, "session", session_id, "--json")).json()[
                "state"
            ] != "detached":
                pass  # each round is one chatctl run: it waits on the session service
        detached = await chatctl(stack, "session", session_id)
        assert "detached" in detached.out and token not in detached.out

        unknown = await chatctl(stack, "session", "0" * 32)
        assert unknown.code == 2
        assert unknown.err.strip().splitlines() == [
            f"chatctl: unknown session {'0' * 32} (expired or never existed)"
        ]
    finally:
        await asyncio.gather(ann.close(), ann2.close(), bob.close())


async def test_user_rooms_and_members(stack: Stack) -> None:
    """user-rooms lists a user's rooms, most recently active first, with role and read
    state; members lists a room's durable members with their read state beside presence
    (one who left the room live stays a member, without sessions)."""
    room, other, tag = unique_room("ctl"), unique_room("ctl"), unique_room("u")
    ann_email, bob_email = f"ann-{tag}@ctl.example", f"bob-{tag}@ctl.example"
    ann, bob = NativeClient(), NativeClient()
    await ann.connect(stack.client_url)
    await bob.connect(stack.client_url)
    try:
        assert (await ann.call("join", {"email": ann_email, "roomId": other}))["ok"]
        joined = await ann.call("join", {"email": ann_email, "roomId": room})
        assert joined["ok"] and joined["role"] == "owner", joined
        assert (await bob.call("join", {"email": bob_email, "roomId": room}))["ok"]
        for text in ("one", "two"):
            assert (await bob.call("send_message", {"roomId": room, "text": text}))["ok"]
        marked = await ann.call("mark_read", {"roomId": room, "seq": 1})
        assert (marked["readSeq"], marked["unread"]) == (1, 1), marked
        assert (await bob.call("leave", {"roomId": room}))["ok"]

        listed = (await chatctl(stack, "user-rooms", ann_email, "--json")).json()
        assert (listed["userId"], listed["total"]) == (ann_email, 2)
        assert [
            (r["roomId"], r["role"], r["readSeq"], r["lastSeq"], r["unread"])
            for r in listed["rooms"]
        ] == [(room, "owner", 1, 2, 1), (other, "owner", 0, 0, 0)]
        cut = await chatctl(stack, "user-rooms", ann_email, "--limit", "1")
        assert cut.code == 0, cut
        assert f"{ann_email}: 2 room(s), 1 not shown (raise --limit)" in " ".join(cut.out.split())
        nobody = (await chatctl(stack, "user-rooms", f"nobody-{tag}@ctl.example", "--json")).json()
        assert (nobody["total"], nobody["rooms"]) == (0, [])

        roster = (await chatctl(stack, "members", room, "--json")).json()
        assert (roster["memberCount"], roster["presentCount"], roster["lastSeq"]) == (2, 1, 2)
        assert [
            (m["userId"], m["email"], m["role"], m["readSeq"], m["unread"], m["sessions"])
            for m in roster["members"]
        ] == [
            (ann_email, ann_email, "owner", 1, 1, [joined["sessionId"]]),
            (bob_email, bob_email, "member", 2, 0, []),
        ]
        table = await chatctl(stack, "members", room)
        assert table.code == 0, table
        assert f"{room}: 2 member(s); 1 present; last seq 2" in " ".join(table.out.split())
    finally:
        await asyncio.gather(ann.close(), bob.close())


async def test_history_export_and_last(stack: Stack, tmp_path: Path) -> None:
    """history --export writes exactly the stored messages, in order, over several pages;
    without --export it shows the last N."""
    room = unique_room("ctl")
    client = await NativeClient().connect(stack.client_url)
    try:
        assert (await client.call("join", {"email": "exp@ctl.example", "roomId": room}))["ok"]
        stored = []
        for i in range(230):
            sent = await client.call("send_message", {"roomId": room, "text": f"m{i} [b]x"})
            assert sent["ok"], sent
            stored.append(sent["message"])
    finally:
        await client.close()

    out = tmp_path / "room.jsonl"
    run = await chatctl(stack, "history", room, "--export", str(out), "--page", "50")
    assert run.code == 0, run
    lines = out.read_text().splitlines()
    assert [json.loads(line) for line in lines] == stored
    assert f"wrote 230 event(s) of {room}" in run.err
    assert not out.with_name("room.jsonl.partial").exists()

    last = await chatctl(stack, "history", room, "--last", "70", "--page", "50", "--json")
    assert last.code == 0, last
    assert [json.loads(line) for line in last.out.splitlines()] == stored[-70:]
    table = await chatctl(stack, "history", room, "--last", "3")
    assert table.code == 0 and "m229 [b]x" in table.out and "head seq 230" in table.out


async def test_changes_show_a_message_as_it_is_and_its_history(stack: Stack) -> None:
    """``changes ROOM SEQ`` shows the message as it is now and each change to it, in seq
    order; ``history`` shows the changes applied, and --export every event as stored."""
    room = unique_room("ctl")
    ann = await NativeClient().connect(stack.client_url)
    try:
        assert (await ann.call("join", {"email": "ann@ctl.example", "roomId": room}))["ok"]
        for text in ("first", "second"):
            assert (await ann.call("send_message", {"roomId": room, "text": text}))["ok"]
        for body in ({"seq": 1, "text": "first, edited"}, {"seq": 1, "text": "first, again"}):
            assert (await ann.call("edit_message", {"roomId": room, **body}))["ok"]
        assert (await ann.call("react", {"roomId": room, "seq": 1, "emoji": "👍"}))["ok"]
        assert (await ann.call("delete_message", {"roomId": room, "seq": 2}))["ok"]
    finally:
        await ann.close()
    shown = await chatctl(stack, "changes", room, "1", "--json")
    assert shown.code == 0, shown
    found = json.loads(shown.out)
    assert found["message"]["text"] == "first, again"
    assert [(c["seq"], c["kind"]) for c in found["changes"]] == [
        (3, "edit"),
        (4, "edit"),
        (5, "react"),
    ]
    table = await chatctl(stack, "changes", room, "1")
    assert table.code == 0 and "first, edited" in table.out and "👍 1" in table.out
    history = await chatctl(stack, "history", room)
    assert history.code == 0 and "deleted" in history.out and "first, again" in history.out


async def test_drain_moves_clients_to_the_other_gateway(make_stack: MakeStack) -> None:
    """drain: the gateway turns not ready, refuses new connections, closes every client with
    1012; Socket.IO clients resume through the balancer on the other gateway; it stays up."""
    stack = await make_stack(gateways=2, balancer=True)
    victim = stack.of_kind("gateway")[0]
    assert victim.public_url is not None
    room = unique_room("ctl")
    sio = [SioClient(reconnection=True) for _ in range(6)]
    await asyncio.gather(*(c.connect(stack.client_url) for c in sio))
    native = [await NativeClient().connect(victim.public_url) for _ in range(3)]
    clients: list[SioClient | NativeClient] = [*sio, *native]
    for i, c in enumerate(clients):
        assert (await c.call("join", {"email": f"d{i}@ctl.example", "roomId": room}))["ok"]
    on_victim = await _clients_of(stack, "gateway-1")
    assert on_victim > len(native), "the balancer put some Socket.IO clients on gateway-1"

    run = await chatctl(stack, "drain", "gateway-1", "--period", "1", "--json")
    done = run.json()
    assert done == {"instance": "gateway-1", "closed": on_victim, "periodS": 1.0}
    for c in native:
        await asyncio.wait_for(c.closed.wait(), 10)
    assert [c.close_code for c in native] == [1012] * len(native)
    await wait_until(
        lambda: sum(len(c.connects) == 2 and c.is_connected() for c in sio) >= on_victim - 3
    )
    moved = [c for c in sio if len(c.connects) > 1]
    assert len(moved) == on_victim - len(native)
    assert all(c.connects == [False, True] for c in moved), "each recovered its session"
    sent = await moved[0].call("send_message", {"roomId": room, "text": "after drain"})
    assert sent["ok"], sent
    for c in sio:
        await c.wait_messages(room, 1)

    assert victim.running, "a drained gateway keeps running"
    status, body = await get_json(f"http://127.0.0.1:{victim.http_port}/readyz")
    assert (status, body["accepting"]) == (503, False)
    with pytest.raises(OSError):
        await websockets.connect(victim.public_url.replace("http://", "ws://") + "/ws")
    found = (await chatctl(stack, "status", "--json", "--quiet", "2")).json()
    accepting = {i["instance"]: i["accepting"] for i in found if i["service"] == "gateway"}
    assert accepting == {"gateway-1": False, "gateway-2": True}

    again = await chatctl(stack, "drain", "gateway-1", "--period", "0")
    assert again.code == 2 and "already draining" in again.err
    await asyncio.gather(*(c.close() for c in sio))
    assert victim.pid is not None
    os.kill(victim.pid, signal.SIGTERM)
    assert await victim.wait() == 0, "a drained gateway still shuts down cleanly"


async def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - client state notifies nobody
            await asyncio.sleep(0.02)


async def _clients_of(stack: Stack, gateway: str) -> int:
    nc = await connect_as(stack.nats_url, stack.nats_seed_files, "operator")
    try:
        reply = await nc.request(f"chat.gateway.{gateway}.status", b"", timeout=5)
    finally:
        await nc.close()
    return int(json.loads(reply.data)["clients"])


async def test_unreachable_nats_and_unknown_gateway(stack: Stack) -> None:
    """No NATS: exit 2 and one line naming the URL; an unknown gateway id: exit 2, one line."""
    url = f"nats://127.0.0.1:{free_port()}"
    run = await chatctl(url, "status")
    assert run.code == 2
    assert run.out == ""
    [line] = run.err.splitlines()
    assert line.startswith(f"chatctl: cannot reach NATS at {url}: ")

    unknown = await chatctl(stack, "drain", "no-such-gateway", "--period", "0")
    assert unknown.code == 2
    assert unknown.err.splitlines() == [
        "chatctl: no gateway instance 'no-such-gateway' answers on "
        "chat.gateway.no-such-gateway.drain"
    ]


async def test_chatctl_needs_the_operator_credentials(stack: Stack, tmp_path: Path) -> None:
    """Without credentials NATS refuses chatctl (exit 2, one line saying how to log in); with
    a service's seed instead of the operator's, an operator request is refused, also in one
    line."""
    anonymous = await chatctl(stack.nats_url, "status")
    gateway_seed = str(stack.nats_seed_files["gateway"])
    wrong = await chatctl(stack.nats_url, "--nkey-seed-file", gateway_seed, "rooms")
    assert (anonymous.code, anonymous.out) == (2, "")
    [line] = anonymous.err.splitlines()
    assert line.startswith(f"chatctl: NATS at {stack.nats_url} requires credentials")
    assert "CHATCTL_NATS_NKEY_SEED_FILE" in line
    assert (wrong.code, wrong.err) == (
        2,
        "chatctl: NATS does not let this identity request chat.session.rooms\n",
    )
