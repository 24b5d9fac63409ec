"""What the gateway does with protocol-level garbage and non-WebSocket requests."""

from __future__ import annotations

import json
from urllib.error import HTTPError
from urllib.request import urlopen

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from tests.support.clients import NativeClient, unique_room

pytestmark = pytest.mark.integration


def _ws(url: str, path: str) -> str:
    return url.replace("http://", "ws://").rstrip("/") + path


async def _closed_with(ws: ClientConnection) -> int | None:
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            await ws.recv()
    return ws.close_code


async def _sio_raw(url: str) -> ClientConnection:
    ws = await websockets.connect(_ws(url, "/socket.io/?EIO=4&transport=websocket"))
    opening = await ws.recv()
    assert isinstance(opening, str) and opening.startswith("0{")
    handshake = json.loads(opening[1:])
    assert handshake["upgrades"] == []
    assert handshake["maxPayload"] == 65536
    assert handshake["pingInterval"] == 25000 and handshake["pingTimeout"] == 20000
    return ws


async def _next(ws: ClientConnection, prefix: str) -> str:
    """The next frame starting with ``prefix`` (events and pings before it are skipped)."""
    while not (frame := str(await ws.recv())).startswith(prefix):
        pass
    return frame


def _http_status(url: str) -> tuple[int, bytes]:
    try:
        with urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except HTTPError as err:
        return err.code, err.read()


async def test_socketio_handshake_connect_and_event_on_the_wire(gateway_url: str) -> None:
    """A raw Socket.IO exchange: open, namespace connect, event with ack, error ack."""
    ws = await _sio_raw(gateway_url)
    try:
        await ws.send("40")
        connected = await ws.recv()
        assert isinstance(connected, str) and connected.startswith("40{")
        assert "sid" in json.loads(connected[2:])
        await ws.send('4212["leave",{"roomId":"' + unique_room() + '"}]')
        ack = await ws.recv()
        assert isinstance(ack, str) and ack.startswith("4312[")
        assert json.loads(ack[4:])[0]["error"]["code"] == "NOT_IN_ROOM"
        await ws.send("40/admin,")
        refused = await ws.recv()
        assert refused == '44/admin,{"message":"Invalid namespace"}'
    finally:
        await ws.close()


async def test_a_namespace_disconnect_ends_the_session_and_keeps_the_connection(
    gateway_url: str,
) -> None:
    """``41`` ends the session at once (the room hears ``user_left``) but the Engine.IO
    connection stays: a new CONNECT on it gets a new socket and a new session."""
    room = unique_room()
    observer = await NativeClient().connect(gateway_url)
    ws = await _sio_raw(gateway_url)
    try:
        await observer.call("join", {"roomId": room, "email": "stays@example.com"})
        await ws.send("40")
        first = json.loads((await _next(ws, "40"))[2:])
        await ws.send('421["join",{"roomId":"' + room + '","email":"leaves@example.com"}]')
        await _next(ws, "431[")
        await ws.send("41")
        await observer.wait_for(lambda ev: any(n == "user_left" for n, _ in ev))
        await ws.send('422["get_history",{"roomId":"' + room + '"}]')  # not connected: ignored
        await ws.send("40")
        second = json.loads((await _next(ws, "40"))[2:])
        assert second["sid"] != first["sid"] and second["pid"] != first["pid"]
        await ws.send('423["get_history",{"roomId":"' + room + '"}]')
        assert (await _next(ws, "43")).startswith("433[")  # 2 was never answered
    finally:
        await ws.close()
        await observer.close()


@pytest.mark.parametrize(
    "frame,code",
    [
        ("zzz", 1002), ('42["join",', 1002), ("9", 1002), (b"\x00\x01", 1002),
        # The official socket.io-protocol suite's "invalid format" cases: an unknown packet
        # type, a payload that is not an array (the protocol says the receiver MUST close),
        # and an ack id that is not a number.
        ("4abc", 1002), ("42{}", 1002), ('42abc["message-with-ack",1,"2",{"3":[false]}]', 1002),
        ("42[]", 1002), ('421["disconnect",{}]', 1002),
    ],
)  # fmt: skip
async def test_socketio_garbage_closes_the_connection(
    gateway_url: str, frame: str | bytes, code: int
) -> None:
    """Undecodable Engine.IO/Socket.IO frames close the connection with the documented code."""
    ws = await _sio_raw(gateway_url)
    await ws.send("40")
    await ws.recv()
    await ws.send(frame)
    assert await _closed_with(ws) == code


async def test_socketio_malformed_payload_keeps_the_connection(gateway_url: str) -> None:
    """A well-framed event with a wrong payload is an error ack; the connection stays up."""
    ws = await _sio_raw(gateway_url)
    try:
        await ws.send("40")
        await ws.recv()
        await ws.send('421["join","not an object"]')
        ack = await ws.recv()
        assert isinstance(ack, str)
        assert json.loads(ack[3:])[0]["error"]["code"] == "INVALID_ARGUMENT"
        await ws.send("422[42]")
        ack = await ws.recv()
        assert isinstance(ack, str)
        assert json.loads(ack[3:])[0]["error"]["code"] == "INVALID_ARGUMENT"
        await ws.send("3")  # a pong is harmless
        await ws.send('423["get_history",{"roomId":"' + unique_room() + '"}]')
        ack = await ws.recv()
        assert isinstance(ack, str) and ack.startswith("433[")
    finally:
        await ws.close()


@pytest.mark.parametrize(
    "frame,code", [("{not json", 1002), (b"\x01binary", 1003), ("x" * 70_000, 1009)]
)
async def test_native_garbage_closes_the_connection(
    gateway_url: str, frame: str | bytes, code: int
) -> None:
    """Non-JSON, binary and oversized frames on /ws close with 1002, 1003 and 1009."""
    ws = await websockets.connect(_ws(gateway_url, "/ws"), max_size=None)
    await ws.send(frame)
    assert await _closed_with(ws) == code


async def test_native_malformed_frames_get_errors_and_keep_the_connection(gateway_url: str) -> None:
    """Valid JSON of the wrong shape gets an error (ack or event); the connection stays up."""
    c = await NativeClient().connect(gateway_url)
    try:
        await c.send_raw('["an", "array"]')
        await c.send_raw('{"type": 7}')
        await c.send_raw('{"type": "join", "id": 5, "data": "nope"}')
        await c.wait_for(lambda ev: len([n for n, _ in ev if n == "error"]) >= 2)
        assert {e["code"] for e in c.of("error")} == {"INVALID_ARGUMENT"}
        reply = await c.call("get_history", {"roomId": unique_room()})
        assert reply["error"]["code"] == "NOT_IN_ROOM"
    finally:
        await c.close()


def test_wrong_engineio_requests_and_unknown_paths_are_refused(gateway_url: str) -> None:
    """An unknown transport gets Engine.IO's code 0, a wrong EIO code 5, other paths 404."""
    base = gateway_url.rstrip("/")
    status, body = _http_status(f"{base}/socket.io/?EIO=4&transport=flash")
    assert status == 400 and json.loads(body)["code"] == 0
    status, body = _http_status(f"{base}/socket.io/?EIO=3&transport=websocket")
    assert status == 400 and json.loads(body)["code"] == 5
    status, _ = _http_status(f"{base}/nothing-here")
    assert status == 404
