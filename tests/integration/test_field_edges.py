"""Peers as the field has them: vanished without a FIN, never reading, keep-alive HTTP.

None of these may cost anyone else anything: the loops that serve every client never wait
for one of them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import pytest

from tests.conftest import MakeStack
from tests.support.clients import NativeClient, unique_room
from tests.support.http import metric
from tests.support.rawws import PING, PingProbe, RawWs, SlowReader, native_join, sio_join
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

SIO_PATH = "/socket.io/?EIO=4&transport=websocket"


def _metrics_url(stack: object) -> str:
    gateway = stack.of_kind("gateway")[0]  # type: ignore[attr-defined]
    return f"http://127.0.0.1:{gateway.http_port}/metrics"


async def test_vanished_peers_do_not_stall_anyones_heartbeat(make_stack: MakeStack) -> None:
    """Five joined Socket.IO clients go silent without a FIN; a healthy client on the same
    gateway keeps getting its pings every pingInterval, and each silent peer is closed and,
    when it never answers the close, aborted."""
    stack = await make_stack(
        env={"GATEWAY_PING_INTERVAL_MS": "500", "GATEWAY_PING_TIMEOUT_MS": "1500"}
    )
    url, room, metrics = stack.client_url, unique_room(), _metrics_url(stack)
    probe = await PingProbe.start(url, "probe@example.com", room)
    silent = [await sio_join(url, f"gone{i}@example.com", room) for i in range(5)]
    try:
        for peer in silent:
            peer.go_silent()

        async def only_the_probe_left() -> bool:
            return await metric(metrics, "chat_gateway_connections", protocol="socketio") == 1

        await eventually(only_the_probe_left, timeout=90)
        assert probe.closed_code is None, "the healthy client was closed"
        assert probe.max_gap < 0.5 + 1.0, probe.max_gap

        async def aborted() -> bool:
            return await metric(metrics, "chat_gateway_close_aborts_total") >= 5

        await eventually(aborted, timeout=30)
        assert probe.max_gap < 0.5 + 1.0, probe.max_gap
    finally:
        await probe.stop()
        for peer in silent:
            peer.abort()


async def test_a_peer_that_never_reads_cannot_freeze_the_watchdog(make_stack: MakeStack) -> None:
    """A connection with no credentials floods pings and never reads their pongs; the
    connect deadline is still enforced, for it and for the next connection."""
    stack = await make_stack(env={"GATEWAY_CONNECT_TIMEOUT_S": "1"})
    url = stack.client_url
    hog = await RawWs.connect(url, SIO_PATH, rcvbuf=4096)
    hog.go_silent()
    for _ in range(2000):
        hog.send_frame(PING, b"x" * 125)
    late = await RawWs.connect(url, SIO_PATH)
    try:
        started = time.monotonic()
        assert await late.closed_with(timeout=10) == 4002
        assert time.monotonic() - started < 1 + 2 + 1  # the deadline, one watch tick, slack
    finally:
        hog.abort()
        await late.close()


CATCH_UP_ENV = {
    "GATEWAY_CATCHUP_SOFT_BYTES": "32768",
    "GATEWAY_SLOW_CONSUMER_BYTES": "131072",
    "GATEWAY_CATCHUP_INTERVAL_S": "0.2",
}
"""A soft limit of 32 KiB and a hard cap of 128 KiB: a few rounds of big messages pass them."""
TEXT = "x" * 4000


async def _send_until(sender: NativeClient, room: str, done: Callable[[], Awaitable[bool]]) -> int:
    """Send 4 KB messages in rounds of 25 until ``done()``; how many were sent. The kernel
    buffers take a few MB for a peer that reads nothing before the gateway has to queue."""
    sent = 0
    for _ in range(200):
        _, acks = await sender.pipeline([("send_message", {"roomId": room, "text": TEXT})] * 25)
        assert all(a["ok"] for a in acks), acks
        sent += 25
        if await done():
            return sent
    raise AssertionError("the gateway never had to queue")


@pytest.mark.parametrize("protocol", ["native", "socketio"])
async def test_a_slow_reader_is_caught_up_not_cut(make_stack: MakeStack, protocol: str) -> None:
    """A member that stops reading in a busy room, then reads slowly while the room goes on,
    then catches up: it is never cut (so what was queued for it never passed the hard cap),
    and it receives every message exactly once, in seq order (with the offset of each seq
    over Socket.IO), the gap filled from history in pages."""
    stack = await make_stack(env=CATCH_UP_ENV)
    url, room, metrics = stack.client_url, unique_room(), _metrics_url(stack)
    join = sio_join if protocol == "socketio" else native_join
    reader = SlowReader(await join(url, "slow@example.com", room, rcvbuf=4096),
                        socketio=protocol == "socketio")  # fmt: skip
    sender = await NativeClient().connect(url)
    try:
        assert (await sender.call("join", {"email": "busy@example.com", "roomId": room}))["ok"]

        async def withheld() -> bool:
            return await metric(metrics, "chat_gateway_frames_shed_total", action="withhold") > 0

        sent = await _send_until(sender, room, withheld)
        assert (
            await metric(metrics, "chat_gateway_lagging_connections") >= 1
        )  # the sender too, maybe
        reader.pace(40_000)  # ten messages a second, while the room sends ten
        for _ in range(3):
            for _ in range(10):
                assert (await sender.call("send_message", {"roomId": room, "text": TEXT}))["ok"]
            sent += 10
        reader.pace(None)
        await eventually(lambda: _received(reader, sent), timeout=60)
        assert reader.seqs == list(range(1, sent + 1)), "every message once, in order"
        if protocol == "socketio":
            assert reader.offsets == [f"{room}:{seq}" for seq in range(1, sent + 1)]
        assert reader.closed_code is None and not reader.ended.is_set()
        assert await metric(metrics, "chat_gateway_slow_consumer_cuts_total") == 0
        assert await metric(metrics, "chat_gateway_catchup_pages_total") > 0
        await eventually(lambda: _lagging(metrics, 0), timeout=10)
    finally:
        await reader.stop()
        await sender.close()


async def _received(reader: SlowReader, count: int) -> bool:
    return len(reader.seqs) >= count


async def _lagging(metrics: str, count: int) -> bool:
    return await metric(metrics, "chat_gateway_lagging_connections") == count


async def test_a_reader_that_never_drains_is_cut_once(make_stack: MakeStack) -> None:
    """A member that stops reading for good while its room is busy is not sent more past
    the soft limit, and is cut with 4008 once GATEWAY_CATCHUP_DEADLINE_S passes without it
    taking a byte: one count in the metric, one warning in the log, however many messages
    follow."""
    # Catch-up pages as fast as they are taken: the kernel's buffers fill as quickly as
    # they did before catch-up existed (a few MB), then the reader takes no byte for 1 s.
    env = {**CATCH_UP_ENV, "GATEWAY_CATCHUP_DEADLINE_S": "1", "GATEWAY_CATCHUP_INTERVAL_S": "0.01"}
    stack = await make_stack(env=env)
    url, room, metrics = stack.client_url, unique_room(), _metrics_url(stack)
    slow = await sio_join(url, "slow@example.com", room, rcvbuf=4096)
    slow.go_silent()
    sender = await NativeClient().connect(url)
    try:
        assert (await sender.call("join", {"email": "busy@example.com", "roomId": room}))["ok"]

        async def cut() -> bool:
            return await metric(metrics, "chat_gateway_slow_consumer_cuts_total") >= 1

        await _send_until(sender, room, cut)
        for _ in range(4):  # fan-out goes on while the cut connection lingers
            _, acks = await sender.pipeline([("send_message", {"roomId": room, "text": TEXT})] * 25)
            assert all(a["ok"] for a in acks)
    finally:
        slow.abort()
        await sender.close()
    assert await metric(metrics, "chat_gateway_slow_consumer_cuts_total") == 1
    log = stack.of_kind("gateway")[0].log_path.read_text()
    assert log.count("slow consumer cut") == 1
    assert log.count("behind and not draining") == 1


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))  # none on a 204
    return status, headers, body


async def test_keep_alive_clients_get_every_answer(gateway_url: str) -> None:
    """Several requests on one connection, a POST with a body among them, are all answered;
    the one that asks to close gets Connection: close and a clean end of stream."""
    host, port = _host_port(gateway_url)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        requests = [
            b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
            b"POST /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n"
            b'Content-Type: text/plain\r\nContent-Length: 11\r\n\r\n40{"a":"b"}',
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n",  # not an upgrade: 426, then closed
        ]
        answers = []
        for request in requests:
            writer.write(request)
            answers.append(await _read_response(reader))
        assert [status for status, _, _ in answers] == [404, 400, 200, 426]
        assert all(h.get("connection") != "close" for _, h, _ in answers[:3])
        assert answers[3][1]["connection"] == "close"
        assert await asyncio.wait_for(reader.read(), 5) == b""  # FIN, not a reset
    finally:
        writer.close()


async def test_a_page_on_an_allowed_origin_can_read_the_answers(make_stack: MakeStack) -> None:
    """CORS on /socket.io/, on one kept-alive connection: a preflight from an allowed origin
    gets 204 with the methods and headers it asked for; its polling handshake, and a
    refusal, grant that origin (with credentials) so the page can read them; another origin
    is refused the handshake (403) and granted nothing."""
    allowed = "http://app.example"
    stack = await make_stack(env={"GATEWAY_ALLOWED_ORIGINS": f'["{allowed}"]'})
    host, port = _host_port(stack.client_url)
    reader, writer = await asyncio.open_connection(host, port)
    polling = "/socket.io/?EIO=4&transport=polling"
    try:
        requests = [
            f"OPTIONS {polling} HTTP/1.1\r\nHost: x\r\nOrigin: {allowed}\r\n"
            "Access-Control-Request-Method: POST\r\n"
            "Access-Control-Request-Headers: content-type\r\n\r\n",
            f"GET {polling} HTTP/1.1\r\nHost: x\r\nOrigin: {allowed}\r\n\r\n",
            f"GET /socket.io/?EIO=3&transport=polling HTTP/1.1\r\nHost: x\r\nOrigin: {allowed}\r\n\r\n",
            f"GET {polling} HTTP/1.1\r\nHost: x\r\nOrigin: http://evil.example\r\n\r\n",
        ]
        answers = []
        for request in requests:
            writer.write(request.encode())
            answers.append(await _read_response(reader))
    finally:
        writer.close()
    (pre_status, pre, _), (status, opened, body), (refused_status, refused, _) = answers[:3]
    foreign_status, foreign, _ = answers[3]
    assert pre_status == 204 and "content-length" not in pre
    assert pre["access-control-allow-origin"] == allowed
    assert pre["access-control-allow-credentials"] == "true"
    assert pre["access-control-allow-methods"] == "GET, POST"
    assert pre["access-control-allow-headers"] == "content-type"
    assert status == 200 and body.startswith(b'0{"sid":')
    assert (opened["access-control-allow-origin"], opened["vary"]) == (allowed, "Origin")
    assert opened["access-control-allow-credentials"] == "true"
    assert refused_status == 400 and refused["access-control-allow-origin"] == allowed
    assert foreign_status == 403 and foreign["vary"] == "Origin"
    assert "access-control-allow-origin" not in foreign


async def test_a_body_too_large_is_answered_before_the_close(gateway_url: str) -> None:
    """A POST larger than the payload limit gets 413 and Connection: close, and the answer
    arrives intact although the body was never read."""
    host, port = _host_port(gateway_url)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        size = 4 * 1024 * 1024
        writer.write(
            b"POST /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n"
            + f"Content-Length: {size}\r\n\r\n".encode()
            + b"x" * 200_000
        )
        status, headers, _ = await _read_response(reader)
        assert (status, headers["connection"]) == (413, "close")
    finally:
        writer.close()


async def test_a_request_that_never_ends_times_out(make_stack: MakeStack) -> None:
    """Half a request head, then nothing: 408 after GATEWAY_HTTP_TIMEOUT_S, then closed."""
    stack = await make_stack(env={"GATEWAY_HTTP_TIMEOUT_S": "1"})
    host, port = _host_port(stack.client_url)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
        status, headers, _ = await _read_response(reader)
        assert (status, headers["connection"]) == (408, "close")
        assert await asyncio.wait_for(reader.read(), 5) == b""
    finally:
        writer.close()
