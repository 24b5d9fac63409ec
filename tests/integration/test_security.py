"""The gateway exposed to hostile clients: origins, tokens, rooms, limits, floods, garbage."""

from __future__ import annotations

import asyncio
import json
import random
import time

import jwt
import pytest
import socketio
import websockets

from tests.conftest import MakeStack
from tests.support.clients import NativeClient, SioClient, unique_room
from tests.support.http import get_json

pytestmark = pytest.mark.integration

SECRET = "k" * 48
JWT_ENV = {
    "GATEWAY_AUTH_MODE": "jwt",
    "GATEWAY_JWT_SECRET": SECRET,
    "GATEWAY_JWT_AUDIENCE": "chat",
    "GATEWAY_ROOM_POLICY": "claim",
    "GATEWAY_ALLOWED_ORIGINS": '["https://chat.example"]',
}


def token(sub: str = "ann@example.com", rooms: list[str] | None = None, **extra: object) -> str:
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": sub,
        "iat": now,
        "exp": now + 300,
        "aud": "chat",
        "rooms": rooms or ["sec-*"],
    }
    claims.update(extra)
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, SECRET, algorithm="HS256")


def _ws(url: str, path: str) -> str:
    return url.replace("http://", "ws://").rstrip("/") + path


async def _status_of(url: str, **kwargs: object) -> int | None:
    try:
        async with websockets.connect(url, **kwargs) as ws:  # type: ignore[arg-type]
            await ws.close()
            return 101
    except websockets.InvalidStatus as exc:
        return exc.response.status_code


async def test_origins_are_matched_exactly(make_stack: MakeStack) -> None:
    """https://evil.example gets 403 on both endpoints; the allowed origin connects."""
    stack = await make_stack(env=JWT_ENV)
    base = stack.client_url
    for path in ("/socket.io/?EIO=4&transport=websocket", "/ws"):
        assert await _status_of(_ws(base, path), origin="https://evil.example") == 403
        assert await _status_of(_ws(base, path), origin="https://chat.example.evil") == 403
        assert await _status_of(_ws(base, path), origin="https://chat.example") == 101


async def test_tokens_are_required_and_checked(make_stack: MakeStack) -> None:
    """Socket.IO and /ws refuse missing, expired, unsigned, forged, wrong-audience and
    exp-less tokens; a good token connects and fixes the identity."""
    stack = await make_stack(env=JWT_ENV)
    url = stack.client_url
    now = int(time.time())
    bad = {
        "missing": None,
        "expired": token(exp=now - 600),
        "alg-none": jwt.encode(
            {"sub": "a@b.io", "iat": now, "exp": now + 60, "aud": "chat"}, None, algorithm="none"
        ),
        "bad-signature": jwt.encode(
            {"sub": "a@b.io", "iat": now, "exp": now + 60, "aud": "chat"},
            "x" * 48,
            algorithm="HS256",
        ),
        "wrong-aud": token(aud="other"),
        "no-exp": token(exp=None),
    }
    for name, value in bad.items():
        sio = socketio.AsyncClient(reconnection=False)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await sio.connect(
                url,
                transports=["websocket"],
                auth={"token": value} if value else None,
                wait_timeout=5,
            )
        await sio.disconnect()
        headers = {"Authorization": f"Bearer {value}"} if value else {}
        native = await websockets.connect(_ws(url, "/ws"), additional_headers=headers)
        if value:
            with pytest.raises(websockets.ConnectionClosed):
                await native.recv()
            assert native.close_code == 4001, name
        else:
            await native.send(
                json.dumps(
                    {"type": "join", "id": 1, "data": {"email": "a@b.io", "roomId": "sec-1"}}
                )
            )
            reply = json.loads(await native.recv())
            assert reply["data"]["error"]["code"] == "UNAUTHENTICATED"
            await native.send(
                json.dumps({"type": "auth", "id": 2, "data": {"token": bad["expired"]}})
            )
            reply = json.loads(await native.recv())
            assert reply["data"]["error"]["code"] == "UNAUTHENTICATED"
            await native.close()

    good = SioClient(auth={"token": token()})
    await good.connect(url)
    native = await websockets.connect(_ws(url, "/ws"))
    try:
        await native.send(
            json.dumps({"type": "auth", "id": 1, "data": {"token": token(sub="bob@example.com")}})
        )
        assert json.loads(await native.recv())["data"] == {
            "ok": True,
            "email": "bob@example.com",
            "droppedRooms": [],
        }
        room = "sec-" + unique_room()
        joined = await good.call("join", {"email": "ann@example.com", "roomId": room})
        assert joined["ok"] is True
        impostor = await good.call("join", {"email": "eve@example.com", "roomId": room})
        assert impostor["error"]["code"] == "IDENTITY_MISMATCH"
        forbidden = await good.call(
            "join", {"email": "ann@example.com", "roomId": "private-" + unique_room()}
        )
        assert forbidden["error"]["code"] == "FORBIDDEN"
    finally:
        await good.close()
        await native.close()


async def test_non_members_cannot_send_read_or_receive(make_stack: MakeStack) -> None:
    """A connection outside a room cannot send to it, read its history or see its messages."""
    stack = await make_stack(env=JWT_ENV)
    room = "sec-" + unique_room()
    member = await SioClient(auth={"token": token()}).connect(stack.client_url)
    outsider = await SioClient(
        auth={"token": token(sub="eve@example.com", rooms=["other-*"])}
    ).connect(stack.client_url)
    try:
        await member.call("join", {"email": "ann@example.com", "roomId": room})
        assert (await outsider.call("join", {"email": "eve@example.com", "roomId": room}))["error"][
            "code"
        ] == "FORBIDDEN"
        assert (await outsider.call("send_message", {"roomId": room, "text": "hi"}))["error"][
            "code"
        ] == "NOT_IN_ROOM"
        assert (await outsider.call("get_history", {"roomId": room}))["error"][
            "code"
        ] == "NOT_IN_ROOM"
        assert (await outsider.call("leave", {"roomId": room}))["error"]["code"] == "NOT_IN_ROOM"
        await member.call("send_message", {"roomId": room, "text": "secret"})
        await member.wait_messages(room, 1)
        own = "other-" + unique_room()
        await outsider.call("join", {"email": "eve@example.com", "roomId": own})
        await outsider.call("send_message", {"roomId": own, "text": "mine"})
        await outsider.wait_messages(own, 1)
        assert [m for m in outsider.of("new_message") if m["roomId"] == room] == []
    finally:
        await member.close()
        await outsider.close()


async def test_oversized_socketio_frame_closes_with_1009(make_stack: MakeStack) -> None:
    """A Socket.IO frame above maxPayload closes the connection with 1009."""
    stack = await make_stack()
    ws = await websockets.connect(
        _ws(stack.client_url, "/socket.io/?EIO=4&transport=websocket"), max_size=None
    )
    await ws.recv()
    await ws.send("40")
    await ws.recv()
    await ws.send('42["send_message",{"roomId":"r","text":"' + "x" * 70_000 + '"}]')
    with pytest.raises(websockets.ConnectionClosed):
        await ws.recv()
    assert ws.close_code == 1009


async def test_thousands_of_random_frames_leave_the_gateway_healthy(make_stack: MakeStack) -> None:
    """Random bytes, random JSON and random Socket.IO packets, thousands of them, over many
    connections: the gateway stays ready and a normal client still chats."""
    stack = await make_stack()
    rng = random.Random(1234)
    pieces = ["0", "1", "2", "3", "4", "40", "41", "42", "43", "44", "45", "451-", '["join"', "{", "}", "[", "]",
              '"', ",", ":", "null", "true", "1e999", "-0", "\\u0000", "\udcff", "/admin,", "𝄞", "9" * 20]  # fmt: skip

    def frame() -> str | bytes:
        kind = rng.random()
        if kind < 0.2:
            return rng.randbytes(rng.randint(0, 64))
        if kind < 0.6:
            return "".join(rng.choice(pieces) for _ in range(rng.randint(1, 12)))
        value = rng.choice(
            [None, 1, "x", [], {}, {"type": rng.choice(["join", "send_message", "x", 5])}]
        )
        return json.dumps({"type": rng.choice(["join", "leave", "get_history", "send_message", 3, None]),
                           "id": rng.choice([1, -1, "a", None, 2**60]), "data": value})  # fmt: skip

    sent = connections = 0
    while sent < 3000:
        endpoint = rng.choice(["/ws", "/socket.io/?EIO=4&transport=websocket"])
        ws = await websockets.connect(_ws(stack.client_url, endpoint), max_size=None)
        connections += 1
        try:
            if "socket.io" in endpoint:
                await ws.recv()
                await ws.send("40")
            for _ in range(200):
                await ws.send(frame())
                sent += 1
        except websockets.ConnectionClosed:
            pass  # garbage closes the connection: open another one
        finally:
            await ws.close()
    assert connections > 10
    (gateway,) = stack.of_kind("gateway")
    status, body = await get_json(f"http://127.0.0.1:{gateway.http_port}/readyz")
    assert status == 200, body
    assert gateway.running
    ok = await SioClient().connect(stack.client_url)
    try:
        room = unique_room()
        await ok.call("join", {"email": "after@example.com", "roomId": room})
        assert (await ok.call("send_message", {"roomId": room, "text": "still fine"}))["ok"]
    finally:
        await ok.close()


async def test_a_users_budget_is_shared_across_gateways(make_stack: MakeStack) -> None:
    """Two connections of one user on two gateways draw from one shared bucket."""
    rate, burst = 20, 20
    stack = await make_stack(
        gateways=2,
        env={
            "SESSION_USER_RATE_PER_S": str(rate),
            "SESSION_USER_RATE_BURST": str(burst),
            "GATEWAY_USER_LEASE": "5",
        },
    )
    room = unique_room()
    tabs = [await NativeClient().connect(url) for url in stack.gateway_urls]
    try:
        for tab in tabs:
            await tab.call("join", {"email": "busy@example.com", "roomId": room})
        start = time.monotonic()
        sent = 0
        while time.monotonic() - start < 2.0:
            for i, tab in enumerate(tabs):
                await tab.send_raw(json.dumps({"type": "send_message", "id": 100_000 + sent,
                                               "data": {"roomId": room, "text": "x", "clientMsgId": f"u{i}-{sent}"}}))  # fmt: skip
                sent += 1
            await asyncio.sleep(0.002)
        for tab in tabs:
            await tab.wait_for(lambda _ev, t=tab: len(t.stray_acks) >= sent // 2, timeout=60)
        last = max(t for tab in tabs for t, _ in tab.stray_acks)
    finally:
        for tab in tabs:
            await tab.close()
    answers = [d for tab in tabs for _, d in tab.stray_acks]
    accepted = sum(1 for d in answers if d.get("ok"))
    limited = {d["error"]["code"] for d in answers if not d.get("ok")}
    # the two joins took 2 tokens; each gateway may hold one unspent lease at the end
    expected = burst + rate * (last - start) - 2
    assert limited == {"RATE_LIMITED"}
    assert expected * 0.8 <= accepted <= expected * 1.1 + 2 * 5, (accepted, expected)


async def test_connections_per_address_are_capped(make_stack: MakeStack) -> None:
    """Past GATEWAY_MAX_CONNECTIONS_PER_IP, new connections from the address get 429."""
    stack = await make_stack(env={"GATEWAY_MAX_CONNECTIONS_PER_IP": "3"})
    held = [await websockets.connect(_ws(stack.client_url, "/ws")) for _ in range(3)]
    try:
        assert await _status_of(_ws(stack.client_url, "/ws")) == 429
    finally:
        for ws in held:
            await ws.close()
    async with asyncio.timeout(10):
        while await _status_of(_ws(stack.client_url, "/ws")) != 101:  # noqa: ASYNC110 - polls another process
            await asyncio.sleep(0.05)


async def test_expired_token_and_silent_connections_are_closed(make_stack: MakeStack) -> None:
    """A token that expires while connected closes the connection with 4003; a connection
    that never connects the namespace is closed with 4002."""
    stack = await make_stack(
        env={**JWT_ENV, "GATEWAY_JWT_LEEWAY_S": "0", "GATEWAY_CONNECT_TIMEOUT_S": "1"}
    )
    url = stack.client_url
    native = await websockets.connect(
        _ws(url, "/ws"),
        additional_headers={"Authorization": f"Bearer {token(exp=int(time.time()) + 2)}"},
    )
    silent = await websockets.connect(_ws(url, "/socket.io/?EIO=4&transport=websocket"))
    await silent.recv()  # the open packet; no namespace connect follows
    with pytest.raises(websockets.ConnectionClosed):
        async with asyncio.timeout(10):
            while True:
                await native.recv()
    assert native.close_code == 4003
    with pytest.raises(websockets.ConnectionClosed):
        async with asyncio.timeout(10):
            while True:
                await silent.recv()
    assert silent.close_code == 4002
