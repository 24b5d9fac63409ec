"""Floods of every frame type: the flooder is paused, then cut; nobody else notices.

Every inbound frame costs the connection a token of its read budget
(``GATEWAY_READ_RATE_PER_S``/``GATEWAY_READ_BURST``), control frames included; over budget
the gateway stops reading it, and after ``GATEWAY_FLOOD_CUT_S`` of sustained abuse closes
it with 1008. The flood is written without waiting from this process (pre-built frames),
so what it costs the gateway is what the gateway chooses to read.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time

import psutil
import pytest

from tests.conftest import MakeStack
from tests.support.clients import NativeClient, unique_room
from tests.support.http import metric
from tests.support.rawws import PING, TEXT, RawWs, close_code, frame

pytestmark = pytest.mark.integration

RATE, BURST, CUT_S = 50, 50, 3.0
FLOOD_ENV = {
    "GATEWAY_RATE_PER_S": str(RATE),
    "GATEWAY_RATE_BURST": str(BURST),
    "GATEWAY_READ_RATE_PER_S": str(2 * RATE),
    "GATEWAY_READ_BURST": str(2 * BURST),
    "GATEWAY_FLOOD_CUT_S": str(CUT_S),
}
FRAMES = 20_000


def _flood(kind: str, room: str) -> tuple[str, bytes]:
    """(path, bytes of ``FRAMES`` frames) for one kind of flood."""
    if kind == "events":
        frames = [
            frame(TEXT, json.dumps({"type": "send_message", "id": i, "data": {
                "roomId": room, "text": "spam", "clientMsgId": f"f{i}"}}).encode(), masked=False)
            for i in range(FRAMES)
        ]  # fmt: skip
        return "/ws", b"".join(frames)
    if kind == "ws-pings":
        return "/ws", frame(PING, b"x" * 125, masked=False) * FRAMES
    sio = "/socket.io/?EIO=4&transport=websocket"
    packet = {"eio-pings": b"2", "sio-acks": b"431[]", "namespace": b"40/admin,"}[kind]
    return sio, frame(TEXT, packet, masked=False) * FRAMES


async def _latencies(client: NativeClient, room: str, count: int) -> list[float]:
    """Send latencies of a client that stays well inside its own event budget: it sends at
    half of ``RATE`` at most (back to back, 70 sends in a row outrun a bucket of ``BURST``
    on a fast machine, and ``RATE_LIMITED`` for the bystander would then be correct)."""
    latencies = []
    next_at = time.perf_counter()
    for _ in range(count):
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        started = time.perf_counter()
        next_at = started + 2 / RATE
        reply = await client.call("send_message", {"roomId": room, "text": "steady"})
        assert reply["ok"] is True, reply
        latencies.append(time.perf_counter() - started)
    return latencies


async def _answers_until_close(ws: RawWs) -> tuple[list[object], int | None]:
    """Every text frame the server sent the flooder, and the close code it ended with."""
    texts: list[object] = []
    while True:
        opcode, payload = await ws.recv(timeout=30)
        if opcode == TEXT:
            texts.append(json.loads(payload) if payload.startswith(b"{") else payload.decode())
        elif opcode == 0x8:
            return texts, close_code(payload)


@pytest.mark.parametrize("kind", ["events", "ws-pings", "eio-pings", "sio-acks", "namespace"])
async def test_a_flood_is_paused_then_cut_and_bystanders_do_not_notice(
    make_stack: MakeStack, kind: str
) -> None:
    """A connection flooding one frame type is read at its budget, closed with 1008 after
    sustained abuse, costs the gateway a bounded share of a core, and another client's
    sends all succeed at their usual latency."""
    stack = await make_stack(env=FLOOD_ENV)
    gateway = stack.of_kind("gateway")[0]
    metrics = f"http://127.0.0.1:{gateway.http_port}/metrics"
    room, steady_room = unique_room(), unique_room()
    steady = await NativeClient().connect(stack.client_url)
    path, flood = _flood(kind, room)
    flooder = await RawWs.connect(stack.client_url, path)
    try:
        assert (await steady.call("join", {"email": "calm@example.com", "roomId": steady_room}))[
            "ok"
        ]
        if path == "/ws":
            flooder.send_text(
                json.dumps({"type": "join", "data": {"email": "flood@example.com", "roomId": room}})
            )
        else:
            await flooder.recv_text()  # the Engine.IO open packet
            flooder.send_text("40")
            assert (await flooder.recv_text()).startswith("40{")
        quiet = await _latencies(steady, steady_room, 30)
        process = psutil.Process(gateway.pid)
        cpu_before, started = sum(process.cpu_times()[:2]), time.monotonic()
        flooder.send_bytes(flood)
        during = await _latencies(steady, steady_room, 30)
        answers, code = await _answers_until_close(flooder)
        elapsed = time.monotonic() - started
        cpu = sum(process.cpu_times()[:2]) - cpu_before
        during += await _latencies(steady, steady_room, 10)
    finally:
        flooder.abort()
        await steady.close()
    assert code == 1008, (code, len(answers))
    assert CUT_S <= elapsed < CUT_S + 5
    assert await metric(metrics, "chat_gateway_flood_cuts_total") == 1
    assert await metric(metrics, "chat_gateway_read_pauses_total") >= 1
    # Read at its budget: burst + rate x time frames at most (plus one 4 KiB slice).
    assert len(answers) <= 2 * BURST + 2 * RATE * elapsed + 4096 / 6 + 2, len(answers)
    assert cpu < 0.3 * elapsed, (cpu, elapsed)
    assert statistics.median(during) <= 2 * statistics.median(quiet) + 0.005, (quiet, during)
    if kind == "events":
        acks = [a["data"] for a in answers if isinstance(a, dict) and a.get("type") == "ack"]
        accepted = sum(1 for a in acks if a.get("ok"))
        refused = {a["error"]["code"] for a in acks if not a.get("ok")}
        assert refused <= {"RATE_LIMITED", "INVALID_ARGUMENT"}
        assert 0 < accepted <= (BURST + RATE * elapsed) * 1.1, (accepted, elapsed)
