"""Engine.IO's HTTP long-polling transport, on the wire and with clients' default settings.

Raw requests check the transport as the Engine.IO protocol states it (handshake, POSTed
packets separated by ``\\x1e``, held GETs, errors with the reference server's codes);
python-socketio's default clients (which start with polling) then chat through it next to
WebSocket clients. The official Node client with its defaults: ``test_js_client.py``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import socketio
import websockets

from chat_devstack.stack import Stack
from tests.conftest import MakeStack
from tests.support.clients import NativeClient, SioClient, unique_room
from tests.support.http import metric
from tests.support.polling import Poller
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


async def test_a_polling_session_chats_as_a_websocket_one_does(make_stack: MakeStack) -> None:
    """Handshake (the upgrade to WebSocket offered), CONNECT, join, two events in one POST, their acks
    and the room's messages in the polls, with a WebSocket client in the same room."""
    stack = await make_stack()
    room = unique_room("poll")
    async with aiohttp.ClientSession() as http:
        poller = await Poller(stack.client_url, http).open()
        assert poller.handshake["upgrades"] == ["websocket"]
        assert {"pingInterval", "pingTimeout", "maxPayload"} <= poller.handshake.keys()
        assert await poller.post("40") == (200, "ok")
        connected = await poller.until(1, "40")
        assert json.loads(connected[-1][2:])["sid"]
        join = {"email": "poll@example.com", "roomId": room}
        assert (await poller.post("421" + json.dumps(["join", join])))[0] == 200
        joined = [p for p in await poller.until(1, "431") if p.startswith("431")]
        assert json.loads(joined[0][3:])[0]["ok"] is True

        other = await SioClient().connect(stack.client_url)
        try:
            await other.call("join", {"email": "ws@example.com", "roomId": room})
            send = ["send_message", {"roomId": room, "text": "from polling"}]
            history = ["get_history", {"roomId": room}]
            status, _ = await poller.post("422" + json.dumps(send), "423" + json.dumps(history))
            assert status == 200
            seen = await poller.until(1, "433")
            acks = [p for p in seen if p.startswith(("432", "433"))]
            assert [a[:3] for a in acks] == ["432", "433"], "acks come in send order"
            assert json.loads(acks[0][3:])[0]["message"]["seq"] == 1
            (message,) = await other.wait_messages(room, 1)
            assert message["text"] == "from polling"
            await other.call("send_message", {"roomId": room, "text": "to polling"})
            new = '42["new_message"'
            before = sum(p.startswith(new) for p in seen)  # the echo may have come with the acks
            seen += await poller.until(2 - before, new)
            events = [p for p in seen if p.startswith(new)]
            assert [json.loads(e[2:])[1]["text"] for e in events] == ["from polling", "to polling"]
        finally:
            await other.close()
        assert await poller.post("1") == (200, "ok")  # Engine.IO close: the session ends


async def test_requests_for_no_session_get_the_reference_errors(make_stack: MakeStack) -> None:
    """An unknown sid gets code 1; opening a session with a POST, or a PUT, code 2; a body
    above the payload limit 413."""
    stack = await make_stack()
    base = stack.client_url.rstrip("/") + "/socket.io/?EIO=4&transport=polling"
    async with aiohttp.ClientSession() as http:
        async with http.get(base + "&sid=nobody") as response:
            assert (response.status, json.loads(await response.text())["code"]) == (400, 1)
        async with http.post(base, data=b"40") as response:
            assert (response.status, json.loads(await response.text())["code"]) == (400, 2)
        poller = await Poller(stack.client_url, http).open()
        async with http.put(poller.session_url, data=b"40") as response:
            assert (response.status, json.loads(await response.text())["code"]) == (400, 2)
        async with http.post(poller.session_url, data=b"4" + b"x" * 70_000) as response:
            assert response.status == 413


async def test_two_polls_at_once_end_the_session(make_stack: MakeStack) -> None:
    """A second GET while one is held is refused and closes the session: the held one
    gets the close packet, and the sid is unknown afterwards. When the client closes (it
    posts ``1``) while a GET is held, that GET gets a noop and the sid is unknown too."""
    stack = await make_stack()
    async with aiohttp.ClientSession() as http:
        poller = await Poller(stack.client_url, http).open()
        await poller.connect()
        # Nothing is queued, so whichever GET arrives first is held until the other one
        # arrives: that one is refused, and the held one gets the close packet.
        answers = await asyncio.wait_for(asyncio.gather(poller.get(), poller.get()), 10)
        assert sorted(status for status, _ in answers) == [200, 400]
        assert (200, "1") in answers
        status, body = await poller.get()
        assert (status, json.loads(body)["code"]) == (400, 1)

        closing = await Poller(stack.client_url, http).open()
        await closing.connect()
        # Whichever comes first: a held GET answered by the close with a noop, or a GET
        # that finds the session already gone.
        held, posted = await asyncio.gather(closing.get(), closing.post("1"))
        assert posted == (200, "ok")
        assert held == (200, "6") or json.loads(held[1])["code"] == 1
        status, body = await closing.get()
        assert (status, json.loads(body)["code"]) == (400, 1)


async def test_a_client_that_stops_polling_is_closed_by_the_heartbeat(
    make_stack: MakeStack,
) -> None:
    """No GET, so no pong: after pingInterval + pingTimeout the session is closed and its
    sid unknown at once."""
    env = {"GATEWAY_PING_INTERVAL_MS": "300", "GATEWAY_PING_TIMEOUT_MS": "300"}
    stack = await make_stack(env=env)
    async with aiohttp.ClientSession() as http:
        poller = await Poller(stack.client_url, http).open()
        await poller.post("40")

        async def forgotten() -> bool:
            status, body = await poller.get()
            return status == 400 and json.loads(body)["code"] == 1

        await eventually(forgotten, timeout=15, every=0.5)


async def test_a_poll_whose_client_left_loses_nothing(make_stack: MakeStack) -> None:
    """A held GET whose TCP connection is dropped takes nothing with it: the message that
    arrives next is in the following poll."""
    stack = await make_stack()
    room = unique_room("poll")
    parts = urlsplit(stack.client_url)
    async with aiohttp.ClientSession() as http:
        poller = await Poller(stack.client_url, http).open()
        await poller.connect()
        await poller.join("p@example.com", room)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        target = urlsplit(poller.session_url)
        writer.write(f"GET {target.path}?{target.query} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await writer.drain()
        writer.transport.abort()  # the held poll's client is gone
        del reader
        other = await SioClient().connect(stack.client_url)
        try:
            await other.call("join", {"email": "o@example.com", "roomId": room})
            await other.call("send_message", {"roomId": room, "text": "kept"})
        finally:
            await other.close()
        seen = await poller.until(1, '42["new_message"')
        texts = [json.loads(p[2:])[1]["text"] for p in seen if p.startswith('42["new_message"')]
        assert texts == ["kept"]


async def test_polling_sessions_count_against_the_address_cap(make_stack: MakeStack) -> None:
    """GATEWAY_MAX_CONNECTIONS_PER_IP covers polling sessions: the third one gets 429."""
    stack = await make_stack(env={"GATEWAY_MAX_CONNECTIONS_PER_IP": "2"})
    async with aiohttp.ClientSession() as http:
        for _ in range(2):
            await Poller(stack.client_url, http).open()
        async with http.get(Poller(stack.client_url, http).url) as response:
            assert response.status == 429


@pytest.mark.parametrize("client_kind", ["asyncio", "threads"])
async def test_python_socketio_default_clients_chat(
    make_stack: MakeStack, client_kind: str
) -> None:
    """python-socketio's AsyncClient and Client, with default options, connect (over
    polling, then upgraded to WebSocket), join and chat with a WebSocket client in the
    same room."""
    stack = await make_stack()
    room = unique_room("pydefault")
    other = await SioClient().connect(stack.client_url)
    try:
        await other.call("join", {"email": "ws@example.com", "roomId": room})
        if client_kind == "asyncio":
            client = socketio.AsyncClient()
            await client.connect(stack.client_url, wait_timeout=10)
            transport = client.transport()
            joined = await client.call("join", {"email": "d@example.com", "roomId": room})
            sent = await client.call("send_message", {"roomId": room, "text": "defaults"})
            await client.disconnect()
        else:

            def chat() -> tuple[str, Any, Any]:
                sync = socketio.Client()
                sync.connect(stack.client_url, wait_timeout=10)
                try:
                    return (
                        sync.transport(),
                        sync.call("join", {"email": "d@example.com", "roomId": room}),
                        sync.call("send_message", {"roomId": room, "text": "defaults"}),
                    )
                finally:
                    sync.disconnect()

            transport, joined, sent = await asyncio.to_thread(chat)
        # The threaded client upgrades only with the websocket-client package, not
        # installed here: it stays on polling. The asyncio one upgrades.
        assert transport == ("websocket" if client_kind == "asyncio" else "polling")
        assert joined["ok"] is True and sent["ok"] is True
        (message,) = await other.wait_messages(room, 1)
        assert message["text"] == "defaults"
    finally:
        await other.close()


async def _relayed(stack: Stack) -> float:
    total = 0.0
    for gateway in stack.of_kind("gateway"):
        url = f"http://127.0.0.1:{gateway.http_port}/metrics"
        total += await metric(url, "chat_gateway_relayed_polls_total", outcome="answered")
    return total


async def test_a_session_is_served_by_whichever_gateway_gets_the_request(
    make_stack: MakeStack,
) -> None:
    """A session opened on one gateway is used through the other: its POSTs and GETs are
    relayed to the gateway holding it. A relayed GET whose client leaves while it is held
    takes nothing with it and does not count as a second poll."""
    stack = await make_stack(gateways=2)
    first, second = stack.gateway_urls
    room = unique_room("relay")
    async with aiohttp.ClientSession() as http:
        opened = await Poller(first, http).open()
        elsewhere = Poller(second, http)
        elsewhere.sid = opened.sid
        assert await elsewhere.post("40") == (200, "ok")
        await elsewhere.until(1, "40")
        join = {"email": "relay@example.com", "roomId": room}
        assert (await elsewhere.post("421" + json.dumps(["join", join])))[0] == 200
        await elsewhere.until(1, "431")
        assert await _relayed(stack) >= 4

        target = urlsplit(elsewhere.session_url)
        parts = urlsplit(second)
        _, writer = await asyncio.open_connection(parts.hostname, parts.port)
        writer.write(f"GET {target.path}?{target.query} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await writer.drain()
        writer.transport.abort()  # the relayed poll's client is gone
        other = await SioClient().connect(first)
        try:
            await other.call("join", {"email": "o@example.com", "roomId": room})
            await other.call("send_message", {"roomId": room, "text": "kept"})
        finally:
            await other.close()
        new = '42["new_message"'
        seen = await opened.until(1, new)
        assert [json.loads(p[2:])[1]["text"] for p in seen if p.startswith(new)] == ["kept"]


async def _upgraded_member(
    stack: Stack, http: aiohttp.ClientSession, room: str
) -> websockets.ClientConnection:
    """A member that opens and joins over polling through the balancer, then upgrades
    for certain: its WebSocket goes to each gateway in turn until the holder accepts it."""
    poller = await Poller(stack.client_url, http).open()
    await poller.connect()
    await poller.join("up@example.com", room)
    for base in stack.gateway_urls:
        url = base.replace("http://", "ws://").rstrip("/")
        try:
            ws = await websockets.connect(
                f"{url}/socket.io/?EIO=4&transport=websocket&sid={poller.sid}"
            )
        except websockets.InvalidStatus:
            continue  # not the holder: 400, the session stays on polling
        await ws.send("2probe")
        assert await ws.recv() == "3probe"
        await ws.send("5")
        return ws
    raise AssertionError("no gateway took the upgrade")


async def _messages_over(ws: websockets.ClientConnection, count: int) -> list[tuple[int, str]]:
    """``count`` new_message events read from a Socket.IO WebSocket (pings answered)."""
    got: list[tuple[int, str]] = []
    async with asyncio.timeout(15):
        while len(got) < count:
            frame = str(await ws.recv())
            if frame == "2":
                await ws.send("3")
            elif frame.startswith('42["new_message"'):
                message = json.loads(frame[2:])[1]
                got.append((message["seq"], message["text"]))
    return got


async def test_polling_needs_no_sticky_sessions(make_stack: MakeStack) -> None:
    """Behind a round-robin balancer over two gateways, python-socketio clients with their
    default options (long-polling first, several HTTP connections each, then an upgrade
    that succeeds when its WebSocket reaches the gateway holding the session and else
    leaves the client on polling), one kept on polling, and a WebSocket client chat in one
    room: every message reaches everyone once with the room's seq, and requests were
    relayed between the gateways; a member upgraded for certain (its WebSocket sent to the
    gateway holding its session) gets them in order too. (python-socketio runs each event handler
    as its own task, so the order of arrival is checked by seq, not by handler order.)"""
    stack = await make_stack(gateways=2, balancer=True)
    room = unique_room("nosticky")
    ws = await SioClient().connect(stack.client_url)
    pollers = [socketio.AsyncClient() for _ in range(4)]
    kept_on_polling = pollers[0]
    received: list[list[tuple[int, str]]] = [[] for _ in pollers]
    for i, client in enumerate(pollers):
        client.on("new_message", lambda msg, *_, i=i: received[i].append((msg["seq"], msg["text"])))
    http = aiohttp.ClientSession()
    try:
        upgraded = await _upgraded_member(stack, http, room)
        await ws.call("join", {"email": "ws@example.com", "roomId": room})
        for i, client in enumerate(pollers):
            transports = ["polling"] if client is kept_on_polling else None
            await client.connect(stack.client_url, wait_timeout=10, transports=transports)
            joined = await client.call("join", {"email": f"p{i}@example.com", "roomId": room})
            assert joined["ok"] is True, joined
        texts = [f"p{i}-{n}" for n in range(5) for i in range(len(pollers))]
        for n in range(5):
            acks = await asyncio.gather(
                *(c.call("send_message", {"roomId": room, "text": f"p{i}-{n}"})
                  for i, c in enumerate(pollers))
            )  # fmt: skip
            assert all(a["ok"] for a in acks), acks
        messages = await ws.wait_messages(room, len(texts))
        order = [(m["seq"], m["text"]) for m in messages]
        assert sorted(text for _, text in order) == sorted(texts)
        assert [seq for seq, _ in order] == list(range(1, len(texts) + 1))
        await eventually(lambda: all(len(r) == len(texts) for r in received), timeout=15)
        assert all(sorted(r) == order for r in received), "everyone got each message once"
        assert await _messages_over(upgraded, len(texts)) == order
        await upgraded.close()
        assert await _relayed(stack) > 0
        assert kept_on_polling.transport() == "polling"
    finally:
        await asyncio.gather(*(c.disconnect() for c in pollers))
        await ws.close()
        await http.close()


async def _fill(sender: NativeClient, room: str) -> None:
    """``sender`` joins ``room`` and sends it 400 messages of 400 characters (past a 32 KiB
    soft limit), pipelined, each acked."""
    await sender.call("join", {"email": "busy@example.com", "roomId": room})
    for _ in range(4):
        calls = [("send_message", {"roomId": room, "text": "x" * 400})] * 100
        _, acks = await sender.pipeline(calls)
        assert all(a["ok"] for a in acks)


async def test_a_polling_client_that_stops_collecting_is_cut_once(make_stack: MakeStack) -> None:
    """A polling session in a busy room that stops sending GETs gets nothing more past the
    soft limit, and is cut once as a slow consumer (4008) when it has collected nothing for
    GATEWAY_CATCHUP_DEADLINE_S, and forgotten."""
    stack = await make_stack(env={"GATEWAY_CATCHUP_SOFT_BYTES": "32768",
                                  "GATEWAY_CATCHUP_DEADLINE_S": "1"})  # fmt: skip
    room = unique_room("slowpoll")
    metrics = f"http://127.0.0.1:{stack.of_kind('gateway')[0].http_port}/metrics"
    sender = await NativeClient().connect(stack.client_url)
    async with aiohttp.ClientSession() as http:
        poller = await Poller(stack.client_url, http).open()
        await poller.connect()
        await poller.join("s@example.com", room)
        try:
            await _fill(sender, room)
        finally:
            await sender.close()
        await eventually(lambda: _cuts(metrics), timeout=10)
        status, body = await poller.get()
        assert (status, json.loads(body)["code"]) == (400, 1)
    assert await metric(metrics, "chat_gateway_slow_consumer_cuts_total") == 1


async def test_a_polling_client_that_falls_behind_is_caught_up(make_stack: MakeStack) -> None:
    """A polling session that stops collecting while its room gets 400 messages (past its
    soft limit) is not cut: once it polls again it collects every message exactly once, in
    seq order with the offset of each, the rest read from history in pages."""
    stack = await make_stack(env={"GATEWAY_CATCHUP_SOFT_BYTES": "32768",
                                  "GATEWAY_CATCHUP_INTERVAL_S": "0.1"})  # fmt: skip
    room = unique_room("behindpoll")
    metrics = f"http://127.0.0.1:{stack.of_kind('gateway')[0].http_port}/metrics"
    sender = await NativeClient().connect(stack.client_url)
    async with aiohttp.ClientSession() as http:
        poller = await Poller(stack.client_url, http).open()
        await poller.connect()
        await poller.join("s@example.com", room)
        try:
            await _fill(sender, room)
            assert await metric(metrics, "chat_gateway_frames_shed_total", action="withhold") > 0
            packets = await poller.until(400, '42["new_message"', timeout=30)
        finally:
            await sender.close()
    events = [json.loads(p[2:]) for p in packets if p.startswith('42["new_message"')]
    assert [e[1]["seq"] for e in events] == list(range(1, 401))
    assert [e[2] for e in events] == [f"{room}:{seq}" for seq in range(1, 401)]
    assert await metric(metrics, "chat_gateway_catchup_pages_total") > 0
    assert await metric(metrics, "chat_gateway_slow_consumer_cuts_total") == 0


async def _cuts(metrics: str) -> bool:
    return await metric(metrics, "chat_gateway_slow_consumer_cuts_total") == 1


async def test_a_polling_session_upgrades_to_websocket(make_stack: MakeStack) -> None:
    """The Engine.IO upgrade on the wire: 2probe/3probe, the held GET released with a noop,
    5; then the session (its room, its acks) goes on over the WebSocket, HTTP requests
    for the sid get 400, a second WebSocket for it is closed, and once the WebSocket is
    gone the sid is unknown. An upgrade that reaches another gateway is refused and the
    session stays on polling there."""
    stack = await make_stack(gateways=2)
    first, second = stack.gateway_urls
    room = unique_room("upgrade")
    async with aiohttp.ClientSession() as http:
        stays = await Poller(first, http).open()
        await stays.connect()
        ws_second = second.replace("http://", "ws://").rstrip("/")
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(
                f"{ws_second}/socket.io/?EIO=4&transport=websocket&sid={stays.sid}"
            )
        assert refused.value.response.status_code == 400
        assert await stays.post(
            "421" + json.dumps(["join", {"email": "s@example.com", "roomId": room}])
        ) == (200, "ok")
        await stays.until(1, "431")

        poller = await Poller(first, http).open()
        await poller.connect()
        held = asyncio.ensure_future(poller.get())
        base = first.replace("http://", "ws://").rstrip("/")
        url = f"{base}/socket.io/?EIO=4&transport=websocket&sid={poller.sid}"
        async with websockets.connect(url) as ws:
            await ws.send("2probe")
            assert await ws.recv() == "3probe"
            assert await asyncio.wait_for(held, 10) == (200, "6")
            await ws.send("5")
            await ws.send("421" + json.dumps(["join", {"email": "u@example.com", "roomId": room}]))
            reply = await ws.recv()
            assert isinstance(reply, str) and reply.startswith("431")
            assert json.loads(reply[3:])[0]["ok"] is True
            status, body = await poller.get()
            assert (status, json.loads(body)["code"]) == (400, 3)
            async with websockets.connect(url) as again:
                await asyncio.wait_for(again.wait_closed(), 10)
            await ws.send(
                "422" + json.dumps(["send_message", {"roomId": room, "text": "upgraded"}])
            )
            frames: list[str] = []
            while not any(f.startswith("432") for f in frames):
                frames.append(str(await asyncio.wait_for(ws.recv(), 10)))
            assert any(f.startswith('42["new_message"') for f in frames)
        seen = await stays.until(1, '42["new_message"')
        assert [json.loads(p[2:])[1]["text"] for p in seen if p.startswith('42["new_message"')] == [
            "upgraded"
        ]

        async def forgotten() -> bool:
            status, body = await poller.get()
            return status == 400 and json.loads(body)["code"] == 1

        await eventually(forgotten, timeout=10)
