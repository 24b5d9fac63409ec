"""The client port in process: an in-process gateway (tests/support/inprocess.py) listening
on a loopback port, reached by real clients over TCP (python-socketio with its defaults, a
raw WebSocket, plain HTTP), with the services' real handlers behind it."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import socketio

from chat_gateway.closecodes import CLOSE_PROTOCOL_ERROR, CLOSE_UNSUPPORTED_DATA
from tests.support.inprocess import InProcessChat, gateway_settings
from tests.support.polling import SEP, Poller
from tests.support.rawws import BINARY, RawWs

SIO = "/socket.io/?EIO=4&transport=polling"


async def _raw_http(url: str, request: bytes) -> bytes:
    """Send ``request`` as it is; everything the gateway answers until it closes."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    try:
        async with asyncio.timeout(5):
            return await reader.read(-1)
    finally:
        writer.close()


async def test_python_socketio_with_its_defaults_chats_over_polling_then_websocket() -> None:
    """python-socketio's AsyncClient with default options opens on long-polling, upgrades
    to WebSocket, joins, sends and receives its own message with the offset."""
    async with InProcessChat(listen=True) as chat:
        client = socketio.AsyncClient(reconnection=False)
        received: asyncio.Queue[tuple[object, ...]] = asyncio.Queue()
        client.on("new_message", lambda *args: received.put_nowait(args))
        await client.connect(chat.url(), wait_timeout=5)
        try:
            joined = await client.call("join", {"email": "py@example.com", "roomId": "r"})
            assert joined["ok"] is True
            sent = await client.call("send_message", {"roomId": "r", "text": "hello"})
            message, offset = await asyncio.wait_for(received.get(), 5)
            assert message == sent["message"] and offset == "r:1"
            assert client.transport() == "websocket"
        finally:
            await client.disconnect()


async def test_a_polling_session_answers_as_the_reference_server_does() -> None:
    """Engine.IO over long-polling by hand: the handshake offers the upgrade, a POST is
    ``ok``, a GET collects what is queued, and a second GET while one is held ends the
    session, as the reference server: 400 to it, the close packet to the held one."""
    async with InProcessChat(listen=True) as chat, aiohttp.ClientSession() as http:
        poller = await Poller(chat.url(), http).open()
        assert poller.handshake["upgrades"] == ["websocket"]
        assert await poller.post("40") == (200, "ok")
        (reply,) = await poller.packets()
        assert reply.startswith("40{")
        assert await poller.post('421["join",{"email":"p@example.com","roomId":"r"}]', "2") == (
            200,
            "ok",
        )
        seen = await poller.until(1, '42["user_joined"')  # the ack comes first
        (ack,) = [p for p in seen if p.startswith("431")]
        assert json.loads(ack[3:])[0]["ok"] is True
        held = asyncio.ensure_future(poller.get())
        session = chat.gateway.port.polling(poller.sid)
        assert session is not None
        await chat.until(lambda: session.held)
        second = await poller.get()
        assert second[0] == 400 and await held == (200, "1")


async def test_polling_requests_for_a_session_held_elsewhere_are_relayed() -> None:
    """Two gateways, no sticky sessions: a POST and a GET that land on the other gateway
    are relayed over the bus to the one holding the session; an unknown sid is refused."""
    async with InProcessChat(listen=True, relay=True) as chat, aiohttp.ClientSession() as http:
        other = await chat.add_gateway(gateway_settings(instance_id="gw-2"))
        poller = await Poller(chat.url(), http).open()
        elsewhere = Poller(chat.url(other), http)
        elsewhere.sid = poller.sid
        assert await elsewhere.post("40") == (200, "ok")
        (reply,) = await elsewhere.packets()
        assert reply.startswith("40{")
        elsewhere.sid = "0123abcd" + poller.sid[8:]  # a tag no gateway holds
        status, body = await elsewhere.get()
        assert (status, json.loads(body)) == (400, {"code": 1, "message": "Session ID unknown"})


async def test_the_native_protocol_over_a_real_websocket() -> None:
    """``/ws``: a join is acked over a real WebSocket; a frame that is not JSON closes the
    connection with 1002, a binary frame with 1003."""
    async with InProcessChat(listen=True) as chat:
        ws = await RawWs.connect(chat.url(), "/ws")
        ws.send_text(
            json.dumps({"type": "join", "id": 1, "data": {"email": "n@example.com", "roomId": "r"}})
        )
        ack = json.loads(await ws.recv_text())
        assert ack["type"] == "ack" and ack["data"]["ok"] is True
        ws.send_text("{not json")
        assert await ws.closed_with() == CLOSE_PROTOCOL_ERROR
        binary = await RawWs.connect(chat.url(), "/ws")
        binary.send_frame(BINARY, b"\x00")
        assert await binary.closed_with() == CLOSE_UNSUPPORTED_DATA


async def test_http_requests_get_well_formed_answers() -> None:
    """The page, unknown paths and methods, Engine.IO errors and a CORS preflight each get
    the answer the reference server (or HTTP) says, on one kept-alive connection."""
    settings = gateway_settings(allowed_origins=["https://app.example"])
    async with InProcessChat(settings, listen=True) as chat, aiohttp.ClientSession() as http:
        url = chat.url()
        async with http.get(url + "/") as page:
            assert page.status == 200 and "Content-Security-Policy" in page.headers
        async with http.get(url + "/nowhere") as missing:
            assert missing.status == 404
        async with http.post(url + "/") as post:
            assert post.status == 405
        async with http.get(url + "/socket.io/?EIO=3&transport=polling") as old:
            assert old.status == 400 and (await old.json())["code"] == 5
        async with http.get(url + "/socket.io/?EIO=4&transport=carrier-pigeon") as odd:
            assert (await odd.json())["code"] == 0
        preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
        async with http.options(url + SIO, headers=preflight) as cors:
            assert cors.status == 204
            assert cors.headers["Access-Control-Allow-Origin"] == "https://app.example"
        async with http.get(url + SIO, headers={"Origin": "https://evil.example"}) as evil:
            assert evil.status == 403


async def test_malformed_and_oversized_requests_are_refused_and_closed() -> None:
    """A request h11 cannot parse gets 400, a body over the payload limit 413, each with
    ``Connection: close``."""
    async with InProcessChat(gateway_settings(max_payload=1024), listen=True) as chat:
        garbage = await _raw_http(chat.url(), b"NOT HTTP AT ALL\r\n\r\n")
        assert garbage.startswith(b"HTTP/1.1 400 ")
        big = b"x" * 2048
        head = b"POST /socket.io/?EIO=4&transport=polling&sid=x HTTP/1.1\r\nHost: h\r\n"
        oversized = await _raw_http(chat.url(), head + b"Content-Length: 2048\r\n\r\n" + big)
        assert oversized.startswith(b"HTTP/1.1 413 ") and b"connection: close" in oversized.lower()


async def test_connections_past_the_per_address_cap_and_after_stop_are_refused() -> None:
    """One address holds at most its cap of connections (429); once the port stops
    accepting, a kept-alive HTTP connection cannot open one (503)."""
    async with InProcessChat(gateway_settings(max_connections_per_ip=1), listen=True) as chat:
        first = await RawWs.connect(chat.url(), "/ws")
        refused = await _raw_http(
            chat.url(),
            b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: h\r\n\r\n",
        )
        assert refused.startswith(b"HTTP/1.1 429 ")
        await first.close()
        host, port = chat.url().removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")  # a connection kept alive
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        await chat.gateway.port.stop_accepting()
        writer.write(f"GET {SIO} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
        assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 503 ")
        writer.close()


async def test_a_polling_session_moves_to_its_websocket_with_what_was_queued() -> None:
    """The upgrade by hand: ``2probe``/``3probe``, the held GET released with a noop, ``5``;
    packets queued before the switch arrive first on the WebSocket, later HTTP requests
    for the sid get 400."""
    async with InProcessChat(listen=True) as chat, aiohttp.ClientSession() as http:
        poller = await Poller(chat.url(), http).open()
        await poller.post("40")
        await poller.packets()
        held = asyncio.ensure_future(poller.get())
        ws = await RawWs.connect(
            chat.url(), f"/socket.io/?EIO=4&transport=websocket&sid={poller.sid}"
        )
        ws.send_text("2probe")
        assert await ws.recv_text() == "3probe"
        assert await held == (200, "6")
        await poller.post('421["join",{"email":"u@example.com","roomId":"r"}]')
        ws.send_text("5")
        reply = await ws.recv_text()
        while reply == "2":
            reply = await ws.recv_text()
        assert reply.startswith("431[") and json.loads(reply[3:])[0]["ok"] is True
        assert (await poller.get())[0] == 400
        ws.send_text('422["get_history",{"roomId":"r"}]')
        while not (answer := await ws.recv_text()).startswith("432["):
            assert answer.startswith(('42["user_joined"', "2")), answer
        assert SEP not in reply
