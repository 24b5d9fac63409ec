"""The cases of the official Socket.IO and Engine.IO protocol suites, in our words.

Every case of the ``test-suite/`` folders of socketio/socket.io-protocol and
socketio/engine.io-protocol has its counterpart here or in ``test_polling.py`` /
``test_protocol_edges.py`` (docs/protocol.md 2.10 maps them). The suites' own servers echo
what they get; ours answers with its events instead, as documented. The gateway runs with
the suites' pingInterval (300 ms) and maxPayload, a pingTimeout long enough for a busy
machine, and a 1 s CONNECT timeout.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from chat_devstack.stack import Stack
from tests.conftest import MakeStack, PrivateStacks, Servers
from tests.support.clients import unique_room
from tests.support.polling import SEP, Poller

pytestmark = pytest.mark.integration

PING_INTERVAL_MS, PING_TIMEOUT_MS, MAX_PAYLOAD = 300, 1500, 1_000_000
SUITE_ENV = {
    "GATEWAY_PING_INTERVAL_MS": str(PING_INTERVAL_MS),
    "GATEWAY_PING_TIMEOUT_MS": str(PING_TIMEOUT_MS),
    "GATEWAY_MAX_PAYLOAD": str(MAX_PAYLOAD),
    "GATEWAY_CONNECT_TIMEOUT_S": "1",
}


@pytest.fixture(scope="module")
async def suite(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    stacks = PrivateStacks(servers, tmp_path_factory.mktemp("conformance"))
    try:
        yield await stacks.make(env=SUITE_ENV)
    finally:
        await stacks.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def _ws_url(stack: Stack, query: str = "EIO=4&transport=websocket") -> str:
    return stack.client_url.replace("http://", "ws://").rstrip("/") + "/socket.io/?" + query


async def _open_ws(stack: Stack) -> tuple[ClientConnection, dict[str, Any]]:
    ws = await websockets.connect(_ws_url(stack))
    opening = str(await ws.recv())
    assert opening.startswith("0{")
    return ws, json.loads(opening[1:])


async def _connected_ws(stack: Stack) -> ClientConnection:
    ws, _ = await _open_ws(stack)
    await ws.send("40")
    assert (await _next(ws, "40")).startswith("40{")
    return ws


async def _next(ws: ClientConnection, prefix: str) -> str:
    """The next frame starting with ``prefix``; pings before it are answered."""
    async with asyncio.timeout(10):
        while True:
            frame = str(await ws.recv())
            if frame.startswith(prefix):
                return frame
            if frame == "2":
                await ws.send("3")


async def _closed_with(ws: ClientConnection) -> int | None:
    async with asyncio.timeout(15):
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await ws.recv()
    return ws.close_code


async def _status(
    http: aiohttp.ClientSession, method: str, url: str, body: str = ""
) -> tuple[int, Any]:
    async with http.request(method, url, data=body.encode()) as response:
        text = await response.text()
        return response.status, (json.loads(text) if text.startswith("{") else text)


# -- Engine.IO: handshake -----------------------------------------------------------------


@pytest.mark.parametrize("transport", ["polling", "websocket"])
async def test_a_handshake_opens_a_session_with_the_configured_values(
    suite: Stack, http: aiohttp.ClientSession, transport: str
) -> None:
    """The open packet holds exactly sid, upgrades, pingInterval, pingTimeout, maxPayload;
    only a polling session offers the upgrade."""
    if transport == "polling":
        handshake = (await Poller(suite.client_url, http).open()).handshake
    else:
        ws, handshake = await _open_ws(suite)
        await ws.close()
    assert set(handshake) == {"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}
    assert isinstance(handshake["sid"], str) and handshake["sid"]
    assert handshake["upgrades"] == (["websocket"] if transport == "polling" else [])
    assert (handshake["pingInterval"], handshake["pingTimeout"], handshake["maxPayload"]) == (
        PING_INTERVAL_MS, PING_TIMEOUT_MS, MAX_PAYLOAD,
    )  # fmt: skip


@pytest.mark.parametrize(
    "method,query,code",
    [
        ("GET", "transport=polling", 5),
        ("GET", "EIO=abc&transport=polling", 5),
        ("GET", "EIO=3&transport=polling", 5),
        ("GET", "EIO=4", 0),
        ("GET", "EIO=4&transport=abc", 0),
        ("PUT", "EIO=4&transport=polling", 2),
        ("POST", "EIO=4&transport=polling", 2),
    ],
)
async def test_a_bad_polling_handshake_is_refused_with_its_code(
    suite: Stack, http: aiohttp.ClientSession, method: str, query: str, code: int
) -> None:
    status, body = await _status(
        http, method, suite.client_url.rstrip("/") + "/socket.io/?" + query
    )
    assert (status, body["code"]) == (400, code)


@pytest.mark.parametrize(
    "query", ["transport=websocket", "EIO=abc&transport=websocket", "EIO=4&transport=abc"]
)
async def test_a_bad_websocket_handshake_is_refused(suite: Stack, query: str) -> None:
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(_ws_url(suite, query))
    assert refused.value.response.status_code == 400


# -- Engine.IO: messages ------------------------------------------------------------------


async def test_a_post_of_several_packets_is_answered_in_order(
    suite: Stack, http: aiohttp.ClientSession
) -> None:
    """One POST with three packets (``\\x1e``-separated): CONNECT and two events with acks;
    their answers come back in order over the following GETs."""
    poller = await Poller(suite.client_url, http).open()
    history = ['["get_history",{"roomId":"' + unique_room() + '"}]'] * 2
    assert await poller.post("40", "421" + history[0], "422" + history[1]) == (200, "ok")
    seen = [p for p in await poller.until(1, "432") if p != "2"]
    assert [p[:3] for p in seen] == ["40{", "431", "432"]


@pytest.mark.parametrize("body", ["abc", "40" + SEP + "bAQIDBA=="])
async def test_a_post_with_an_invalid_or_binary_packet_ends_the_session(
    suite: Stack, http: aiohttp.ClientSession, body: str
) -> None:
    """Garbage, or a base64 binary packet (binary is not served, docs/protocol.md 2.6),
    ends the session: the next GET for its sid gets 400, session unknown."""
    poller = await Poller(suite.client_url, http).open()
    status, _ = await _status(http, "POST", poller.session_url, body)
    assert status in (200, 400)
    assert (await poller.get())[0] == 400


@pytest.mark.parametrize("frame", ["abc", "4abc", b"\x01\x02\x03\x04"])
async def test_an_invalid_packet_before_connect_closes_the_websocket(
    suite: Stack, frame: str | bytes
) -> None:
    """Right after the open packet: an unknown Engine.IO type, an unknown Socket.IO type, or
    a binary frame no packet announced closes with 1002."""
    ws, _ = await _open_ws(suite)
    await ws.send(frame)
    assert await _closed_with(ws) == 1002


# -- Engine.IO: heartbeat and close -------------------------------------------------------


async def test_polling_pings_are_collected_and_answered(
    suite: Stack, http: aiohttp.ClientSession
) -> None:
    """Three rounds of GET → ``2`` and POST ``3`` → ``ok``; the session is then alive."""
    poller = await Poller(suite.client_url, http).open()
    for _ in range(3):
        assert await poller.get() == (200, "2")
        assert await poller.post("3") == (200, "ok")
    assert await poller.post("40") == (200, "ok")
    assert (await poller.until(1, "40{"))[-1].startswith("40{")


async def test_websocket_pings_are_answered_and_a_silent_client_is_closed(suite: Stack) -> None:
    """A client answering ``2`` with ``3`` stays; one that reads but never answers is
    closed with 4000 (ping timeout)."""
    ws = await _connected_ws(suite)
    for _ in range(3):
        assert await ws.recv() == "2"
        await ws.send("3")
    await ws.close()
    silent = await _connected_ws(suite)
    assert await _closed_with(silent) == 4000


async def test_a_websocket_client_that_never_connects_the_namespace_is_closed(
    suite: Stack,
) -> None:
    ws, _ = await _open_ws(suite)
    assert await _closed_with(ws) == 4002


@pytest.mark.parametrize("connected", [False, True])
async def test_an_engineio_close_packet_closes_the_websocket(suite: Stack, connected: bool) -> None:
    ws = await _connected_ws(suite) if connected else (await _open_ws(suite))[0]
    await ws.send("1")
    assert await _closed_with(ws) == 1000


async def test_a_poll_sent_during_the_upgrade_probe_gets_a_noop(
    suite: Stack, http: aiohttp.ClientSession
) -> None:
    """After ``3probe``, a new GET is answered at once with ``6`` (noop); ``5`` then moves
    the session to the WebSocket."""
    poller = await Poller(suite.client_url, http).open()
    await poller.connect()
    async with websockets.connect(
        _ws_url(suite, f"EIO=4&transport=websocket&sid={poller.sid}")
    ) as ws:
        await ws.send("2probe")
        assert await ws.recv() == "3probe"
        assert await asyncio.wait_for(poller.get(), 5) == (200, "6")
        await ws.send("5")
        await ws.send('421["get_history",{"roomId":"' + unique_room() + '"}]')
        assert (await _next(ws, "43")).startswith("431[")


# -- Socket.IO: namespaces ----------------------------------------------------------------


@pytest.mark.parametrize("packet,namespace", [
    ('40/custom,{"token":"abc"}', "/custom"), ("40/random", "/random"), ("40/custom,", "/custom"),
])  # fmt: skip
async def test_a_connect_to_another_namespace_is_refused_and_the_connection_stays(
    suite: Stack, packet: str, namespace: str
) -> None:
    ws, _ = await _open_ws(suite)
    await ws.send(packet)
    assert await _next(ws, "44") == "44" + namespace + ',{"message":"Invalid namespace"}'
    await ws.send("40")
    assert (await _next(ws, "40")).startswith("40{")
    await ws.close()


async def test_after_a_namespace_disconnect_only_pings_follow(suite: Stack) -> None:
    """``41`` on ``/``: the connection stays and the next packet is the heartbeat's ping."""
    ws = await _connected_ws(suite)
    await ws.send("41")
    assert await asyncio.wait_for(ws.recv(), 5) == "2"
    await ws.close()


async def test_a_disconnect_of_another_namespace_leaves_the_main_one(suite: Stack) -> None:
    ws = await _connected_ws(suite)
    await ws.send("40/custom,")
    await _next(ws, "44/custom,")
    await ws.send("41/custom,")
    await ws.send('427["get_history",{"roomId":"' + unique_room() + '"}]')
    assert (await _next(ws, "43")).startswith("437[")
    await ws.close()


# -- Socket.IO: messages ------------------------------------------------------------------


@pytest.mark.parametrize("ack", ["", "456"])
async def test_an_event_with_several_arguments_is_an_invalid_argument(
    suite: Stack, ack: str
) -> None:
    """Our events take one argument: the answer is an error (an ack when asked for one,
    else an ``error`` event naming the event); the connection stays."""
    ws = await _connected_ws(suite)
    await ws.send("42" + ack + '["message",1,"2",{"3":[true]}]')
    await _expect_invalid_argument(ws, ack, event="message")
    await ws.close()


@pytest.mark.parametrize("ack", ["", "789"])
async def test_binary_attachments_are_refused_and_their_frames_swallowed(
    suite: Stack, ack: str
) -> None:
    ws = await _connected_ws(suite)
    await ws.send(
        "452-" + ack + '["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]'
    )
    await ws.send(b"\x01\x02\x03")
    await ws.send(b"\x04\x05\x06")
    await _expect_invalid_argument(ws, ack, event="message")
    await ws.close()


async def _expect_invalid_argument(ws: ClientConnection, ack: str, *, event: str) -> None:
    if ack:
        answer = json.loads((await _next(ws, "43" + ack + "["))[2 + len(ack) :])[0]
        assert answer["ok"] is False and answer["error"]["code"] == "INVALID_ARGUMENT"
    else:
        error = json.loads((await _next(ws, '42["error"'))[2:])[1]
        assert (error["code"], error["event"]) == ("INVALID_ARGUMENT", event)
    await ws.send('421["get_history",{"roomId":"' + unique_room() + '"}]')
    assert (await _next(ws, "43")).startswith("431[")


# -- the path -----------------------------------------------------------------------------


async def test_socketio_is_served_at_the_configured_path(make_stack: MakeStack) -> None:
    """``GATEWAY_SOCKETIO_PATH=/engine.io/`` (the engine.io suite's path): polling and
    WebSocket are served there, and ``/socket.io/`` is not found."""
    stack = await make_stack(env={"GATEWAY_SOCKETIO_PATH": "/engine.io/"})
    async with aiohttp.ClientSession() as http:
        poller = await Poller(stack.client_url, http, path="/engine.io/").open()
        await poller.post("40")
        await poller.until(1, "40{")
        status, _ = await _status(
            http, "GET", stack.client_url.rstrip("/") + "/socket.io/?EIO=4&transport=polling"
        )
        assert status == 404
    url = (
        stack.client_url.replace("http://", "ws://").rstrip("/")
        + "/engine.io/?EIO=4&transport=websocket"
    )
    async with websockets.connect(url) as ws:
        assert str(await ws.recv()).startswith("0{")
