"""Hostile clients: claims across resume, identity swaps, edge values for every field.

Each test is something an attacker tried against the running system; each must end in a
documented error code and change nothing it should not.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

import psutil
import pytest

from tests.conftest import MakeStack
from tests.integration.test_security import JWT_ENV, token
from tests.support.clients import NativeClient, SioClient, unique_room
from tests.support.logs import stack_errors
from tests.support.rawws import RawWs, frame

pytestmark = pytest.mark.integration


def _resume_of(joined: dict[str, str]) -> dict[str, str]:
    return {"sessionId": joined["sessionId"], "resumeToken": joined["resumeToken"]}


def _room() -> str:
    return "sec-" + unique_room()


async def test_native_resume_drops_rooms_the_new_token_does_not_allow(
    make_stack: MakeStack,
) -> None:
    """A session joined to two rooms is resumed with a token that allows only one: the
    other is left (its members see user_left), reported as dropped, and stays closed."""
    stack = await make_stack(env=JWT_ENV)
    url = stack.client_url
    kept, lost = _room(), _room()
    watcher = await SioClient(auth={"token": token(sub="bob@example.com")}).connect(url)
    first = await NativeClient().connect(url)
    second = await NativeClient().connect(url)
    try:
        assert (await watcher.call("join", {"email": "bob@example.com", "roomId": lost}))["ok"]
        assert (await first.call("auth", {"token": token(rooms=[kept, lost])}))["ok"]
        joined = None
        for room in (kept, lost):
            joined = await first.call("join", {"email": "ann@example.com", "roomId": room})
            assert joined["ok"], joined
        assert first.ws is not None and joined is not None
        first.ws.transport.abort()  # a drop: the session stays resumable
        assert (await second.call("auth", {"token": token(rooms=[kept])}))["ok"]
        resumed = await second.call(
            "resume", {"sessionId": joined["sessionId"], "resumeToken": joined["resumeToken"]}
        )
        assert resumed["ok"] and resumed["recovered"], resumed
        assert (resumed["rooms"], resumed["droppedRooms"]) == ([kept], [lost])
        await watcher.wait_for(
            lambda ev: any(
                n == "user_left" and d["roomId"] == lost and d["email"] == "ann@example.com"
                for n, d in ev
            )
        )
        sent = await second.call("send_message", {"roomId": lost, "text": "still here?"})
        assert sent["error"]["code"] == "NOT_IN_ROOM"
        again = await second.call("join", {"email": "ann@example.com", "roomId": lost})
        assert again["error"]["code"] == "FORBIDDEN"
        assert (await watcher.call("send_message", {"roomId": lost, "text": "private"}))["ok"]
        assert (await second.call("send_message", {"roomId": kept, "text": "barrier"}))["ok"]
        await second.wait_messages(kept, 1)
        assert [m for m in second.of("new_message") if m["roomId"] == lost] == []
    finally:
        await watcher.close()
        await second.close()


async def test_socketio_recovery_drops_rooms_the_new_token_does_not_allow(
    make_stack: MakeStack,
) -> None:
    """The same through Socket.IO connection state recovery: the CONNECT reply keeps the
    pid (recovered), names the dropped room, and an error event says FORBIDDEN for it."""
    stack = await make_stack(env=JWT_ENV)
    url, path = stack.client_url, "/socket.io/?EIO=4&transport=websocket"
    kept, lost = _room(), _room()
    first = await RawWs.connect(url, path)
    await first.recv_text()
    first.send_text("40" + json.dumps({"token": token(rooms=[kept, lost])}))
    pid = json.loads((await first.recv_text())[2:])["pid"]
    for ack, room in enumerate((kept, lost)):
        first.send_text(f'42{ack}["join",{{"email":"ann@example.com","roomId":"{room}"}}]')
        while not (await first.recv_text()).startswith(f"43{ack}"):
            pass
    first.abort()
    second = await RawWs.connect(url, path)
    try:
        await second.recv_text()
        second.send_text("40" + json.dumps({"token": token(rooms=[kept]), "pid": pid}))
        reply = json.loads((await second.recv_text())[2:])
        assert reply["pid"] == pid and reply["droppedRooms"] == [lost], reply
        error = await second.recv_text()
        assert error.startswith('42["error"'), error
        assert json.loads(error[2:])[1] == {
            "code": "FORBIDDEN",
            "message": "the token does not allow this room",
            "event": "resume",
            "roomId": lost,
        }
        second.send_text(f'429["send_message",{{"roomId":"{lost}","text":"x"}}]')
        while not (answer := await second.recv_text()).startswith("439"):
            pass
        assert json.loads(answer[3:])[0]["error"]["code"] == "NOT_IN_ROOM"
    finally:
        await second.close()


async def test_a_refused_reauth_changes_nothing(make_stack: MakeStack) -> None:
    """Authenticated as ann (a token about to expire) and joined, the connection sends
    another user's token: IDENTITY_MISMATCH, and the connection is still ann's: it keeps
    sending as ann and is closed with 4003 when ann's token expires."""
    stack = await make_stack(env={**JWT_ENV, "GATEWAY_JWT_LEEWAY_S": "0"})
    room = _room()
    client = await NativeClient().connect(stack.client_url)
    try:
        assert (await client.call("auth", {"token": token(exp=int(time.time()) + 4)}))["ok"]
        assert (await client.call("join", {"email": "ann@example.com", "roomId": room}))["ok"]
        swap = await client.call("auth", {"token": token(sub="eve@example.com")})
        assert swap["error"]["code"] == "IDENTITY_MISMATCH"
        sent = await client.call("send_message", {"roomId": room, "text": "who am I"})
        assert sent["message"]["email"] == "ann@example.com"
        await asyncio.wait_for(client.closed.wait(), 15)
        assert client.close_code == 4003
    finally:
        await client.close()


async def test_edge_values_get_invalid_argument_and_log_no_error(make_stack: MakeStack) -> None:
    """Numbers beyond a bigint, NUL and other control characters, in every field that
    takes them: INVALID_ARGUMENT, the session is unharmed, no service logs an error."""
    stack = await make_stack()
    room = unique_room()
    client = await NativeClient().connect(stack.client_url)
    other = await NativeClient().connect(stack.client_url)
    try:
        joined = await client.call("join", {"email": "ann@example.com", "roomId": room})
        assert joined["ok"]
        refusals = [
            await client.call("get_history", {"roomId": room, "beforeSeq": 2**63}),
            await client.call("get_history", {"roomId": room, "beforeSeq": 10**30}),
            await client.call("send_message", {"roomId": room, "text": "a\x00b"}),
            await client.call("send_message", {"roomId": room, "text": "\x1b[2J"}),
            await client.call("send_message", {"roomId": room, "text": "t", "clientMsgId": "\x00"}),
            await other.call("join", {"email": "a\x00@example.com", "roomId": room}),
            await other.call("resume", {**_resume_of(joined), "lastSeq": {room: 10**30}}),
        ]
        assert [r["error"]["code"] for r in refusals] == ["INVALID_ARGUMENT"] * len(refusals)
        sent = await client.call("send_message", {"roomId": room, "text": "tab\tand\nnewline"})
        assert sent["ok"] and sent["message"]["text"] == "tab\tand\nnewline"
    finally:
        await client.close()
        await other.close()
    assert stack_errors(stack.services) == {}


FLOOD_S = float(os.environ.get("HOSTILE_FLOOD_S", "10"))
"""How long each unauthenticated flood lasts (docs/security.md quotes a 60 s run)."""
FLOODERS = int(os.environ.get("HOSTILE_FLOODERS", "20"))
"""Concurrent flooding connections (the per-address cap is 256)."""
RECONNECT_S = 3.0


def _unauthenticated_flood(kind: str) -> tuple[str, bytes]:
    """(path, bytes) of one connection's flood of one frame type, with no credentials."""
    sio = "/socket.io/?EIO=4&transport=websocket"
    event = json.dumps({"type": "send_message", "id": 1, "data": {"roomId": "r", "text": "x"}})
    return {
        "ws-pings": ("/ws", frame(0x9, b"x" * 125, masked=False) * 2_000),
        "events": ("/ws", frame(0x1, event.encode(), masked=False) * 2_000),
        "large-text": ("/ws", frame(0x1, b"[" * 60_000, masked=False) * 4),
        "eio-pings": (sio, frame(0x1, b"2", masked=False) * 40_000),
        "namespaces": (sio, frame(0x1, b"40/admin,", masked=False) * 20_000),
    }[kind]


@pytest.mark.parametrize("kind", ["ws-pings", "events", "large-text", "eio-pings", "namespaces"])
async def test_unauthenticated_floods_keep_gateway_memory_bounded(
    make_stack: MakeStack, kind: str
) -> None:
    """Twenty connections with no credentials flood one frame type for as long as the
    gateway reads, never read themselves, and are replaced by fresh ones every three
    seconds: the gateway's memory stays within a bound, and a legitimate client still
    connects and chats."""
    limits = {"GATEWAY_READ_RATE_PER_S": "50", "GATEWAY_READ_BURST": "100",
              "GATEWAY_RATE_PER_S": "20", "GATEWAY_RATE_BURST": "40"}  # fmt: skip
    stack = await make_stack(env={**JWT_ENV, **limits})
    url = stack.client_url
    process = psutil.Process(stack.of_kind("gateway")[0].pid)
    baseline = peak = process.memory_info().rss
    path, flood = _unauthenticated_flood(kind)
    stop = asyncio.Event()
    connections = 0

    async def flooder() -> None:
        nonlocal connections
        while not stop.is_set():
            ws = await RawWs.connect(url, path, rcvbuf=4096)
            connections += 1
            ws.go_silent()
            # Keep flooding for as long as the gateway takes it (TCP tells), up to 3 s; the
            # gateway closes it meanwhile (the connect deadline, a cut, a protocol error),
            # and a fresh connection takes its place.
            until = time.monotonic() + RECONNECT_S
            while not stop.is_set() and (left := until - time.monotonic()) > 0:
                ws.send_bytes(flood)
                if not await ws.drain(timeout=left):
                    break
            await asyncio.sleep(max(0.0, until - time.monotonic()))  # the 3 s cadence itself
            ws.abort()

    tasks = [asyncio.ensure_future(flooder()) for _ in range(FLOODERS)]
    deadline = time.monotonic() + FLOOD_S
    try:
        while time.monotonic() < deadline:
            peak = max(peak, process.memory_info().rss)
            await asyncio.sleep(0.2)  # sampling the gateway's memory, not waiting for it
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    growth_mib = (peak - baseline) / 2**20
    print(f"{kind}: {connections} connections in {FLOOD_S:.0f} s, RSS "
          f"{baseline / 2**20:.0f} -> peak {peak / 2**20:.0f} MiB (+{growth_mib:.1f})")  # fmt: skip
    assert growth_mib < 24, growth_mib
    calm = await SioClient(auth={"token": token()}).connect(url)
    try:
        assert (await calm.call("join", {"email": "ann@example.com", "roomId": _room()}))["ok"]
    finally:
        await calm.close()
