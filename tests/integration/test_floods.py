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
from collections import Counter

import asyncpg
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import MakeStack
from tests.support.clients import NativeClient, unique_room
from tests.support.http import get_text, metric
from tests.support.logs import stack_errors
from tests.support.rawws import PING, TEXT, RawWs, close_code, frame, native_join, sio_join

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


# -- a flood of read marks -------------------------------------------------------------------

MARKS, HEAD = 2_000, 20
DEPLOYED_LIMITS = {
    # The event limits as shipped (docs/protocol.md section 7); the read budget stays raised
    # (FAST_SETTINGS) so that the gateway reads the whole flood at once: what the read
    # budget does to a flooder (paused, then cut with 1008) is the test above.
    "GATEWAY_RATE_PER_S": "20",
    "GATEWAY_RATE_BURST": "40",
    "SESSION_USER_RATE_PER_S": "30",
    "SESSION_USER_RATE_BURST": "60",
}
MARK_WRITE = "chat.history.mark_read"


def _marks(room: str, foreign: str) -> list[tuple[str, int]]:
    """The flood's marks: seqs 0 to HEAD + 1 over and over (the last one beyond the head),
    and every 50th on a room of another user."""
    return [(foreign, 1) if i % 50 == 49 else (room, i % (HEAD + 2)) for i in range(MARKS)]


def _mark_frames(protocol: str, marks: list[tuple[str, int]], first_id: int) -> bytes:
    """Every mark as one frame with an ack id, all written at once (pipelined)."""
    frames = []
    for i, (room, seq) in enumerate(marks):
        data = {"roomId": room, "seq": seq}
        if protocol == "native":
            text = json.dumps({"type": "mark_read", "id": first_id + i, "data": data})
        else:
            text = f"42{first_id + i}" + json.dumps(["mark_read", data])
        frames.append(frame(TEXT, text.encode(), masked=False))
    return b"".join(frames)


async def _read_answers(
    ws: RawWs, protocol: str, count: int
) -> tuple[list[tuple[int, dict[str, object]]], list[dict[str, object]]]:
    """Read until ``count`` acks came: the acks (id, data) in arrival order, and the
    read_state events seen on the way."""
    acks: list[tuple[int, dict[str, object]]] = []
    states: list[dict[str, object]] = []
    async with asyncio.timeout(120):
        while len(acks) < count:
            text = await ws.recv_text(timeout=60)
            if protocol == "native":
                message = json.loads(text)
                if message["type"] == "ack":
                    acks.append((message["id"], message["data"]))
                elif message["type"] == "read_state":
                    states.append(message["data"])
            elif text == "2":
                ws.send_text("3")  # an Engine.IO ping
            elif text.startswith("43"):
                head = text.index("[")
                acks.append((int(text[2:head]), json.loads(text[head:])[0]))
            elif text.startswith('42["read_state"'):
                states.append(json.loads(text[2:])[1])
    return acks, states


async def _history_writes(metrics_url: str) -> float:
    """The gateway's requests to history's ``mark_read`` so far, whatever their result."""
    _status, text = await get_text(metrics_url)
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "chat_nats_request_seconds_count"
        and sample.labels.get("subject") == MARK_WRITE
    )


async def _stream_head(dsn: str, user_id: str) -> int:
    """The user's stream head in Postgres: how many user events were ever appended."""
    conn = await asyncpg.connect(dsn)
    try:
        return int(
            await conn.fetchval("SELECT last_seq FROM user_streams WHERE user_id = $1", user_id)
            or 0
        )
    finally:
        await conn.close()


@pytest.mark.parametrize(
    ("protocol", "limits"),
    [("native", "deployed"), ("socketio", "deployed"), ("native", "none"), ("socketio", "none")],
)
async def test_a_flood_of_marks_is_answered_in_order_and_costs_bounded_writes(
    make_stack: MakeStack, protocol: str, limits: str
) -> None:
    """2,000 mark_read events written at once on one connection (seqs 0 to the head + 1
    over and over, every 50th on another user's room): every one is answered, in order,
    and the connection stays up; each success is the state after the write that carried
    it (marks in flight together share one write with the largest of them: at least the
    marks before it, never more than the largest good mark, never going back), the
    others are RATE_LIMITED (only with limits), INVALID_ARGUMENT (only
    beyond the head) or NOT_MEMBER (only the foreign room); no service logs an error.

    The cost is bounded twice over. Writes: each admitted mark costs history at most one
    write (marks in flight together share one: there are fewer writes than marks
    without limits), and with the deployed limits at most ``BURST + RATE x elapsed`` are admitted. Stored
    events: a read_state event is appended only when the watermark moves, and it only
    moves forward and never past the head, so the user's stream (``user_streams``) grows
    by at most the head minus the starting watermark (20), however many marks come: here
    by at most the number of times the running maximum of the good marks rose (fewer when
    marks share writes), and the connection receives exactly that many read_state
    events."""
    stack = await make_stack(env=DEPLOYED_LIMITS if limits == "deployed" else None)
    gateway = stack.of_kind("gateway")[0]
    metrics = f"http://127.0.0.1:{gateway.http_port}/metrics"
    room, foreign = unique_room("flood"), unique_room("foreign")
    flooder_email = "flood@example.com"
    bob = await NativeClient().connect(stack.client_url)
    join = sio_join if protocol == "socketio" else native_join
    ws = await join(stack.client_url, flooder_email, room)
    try:
        for target in (room, foreign):
            assert (await bob.call("join", {"email": "bob@example.com", "roomId": target}))["ok"]
        for i in range(HEAD):  # within bob's burst
            assert (await bob.call("send_message", {"roomId": room, "text": f"m{i}"}))["ok"]
        marks = _marks(room, foreign)
        flood = _mark_frames(protocol, marks, first_id=100)
        writes_before = await _history_writes(metrics)
        stream_before = await _stream_head(stack.postgres_dsn, flooder_email)
        started = time.monotonic()
        ws.send_bytes(flood)
        acks, states = await _read_answers(ws, protocol, MARKS)
        elapsed = time.monotonic() - started
        while True:  # the connection is still up and answers; past the flood's refusals
            ws.send_text(
                json.dumps({"type": "get_rooms", "id": 99, "data": {"follow": False}})
                if protocol == "native"
                else '4299["get_rooms",{"follow":false}]'
            )
            [(last_id, after)], more_states = await _read_answers(ws, protocol, 1)
            states += more_states
            if after["ok"] is True or after["error"]["code"] != "RATE_LIMITED":  # type: ignore[index]
                break
            await asyncio.sleep(after["error"]["retryAfterMs"] / 1000)  # type: ignore[index]
        writes = await _history_writes(metrics) - writes_before
        stream = await _stream_head(stack.postgres_dsn, flooder_email) - stream_before
    finally:
        await ws.close()
        await bob.close()

    assert [i for i, _ in acks] == list(range(100, 100 + MARKS)), "answered in order"
    read_seq, moves, admitted, codes, acked = 0, 0, 0, Counter[str](), 0
    largest = max(seq for target, seq in marks if target == room and seq <= HEAD)
    for (target, seq), (_, answer) in zip(marks, acks, strict=True):
        if answer["ok"] is True:
            admitted += 1
            assert target == room and seq <= HEAD, (target, seq, answer)
            moves += seq > read_seq
            read_seq = max(read_seq, seq)
            got = answer["readSeq"]
            assert isinstance(got, int) and read_seq <= got <= largest and got >= acked, answer
            acked = got
            assert answer == {"ok": True, "roomId": room, "readSeq": got,
                              "lastSeq": HEAD, "unread": HEAD - got}, (seq, answer)  # fmt: skip
            continue
        error = answer["error"]
        assert isinstance(error, dict)
        codes[error["code"]] += 1
        if error["code"] == "RATE_LIMITED":
            assert limits == "deployed" and error["retryAfterMs"] >= 1, error
        elif error["code"] == "NOT_MEMBER":
            admitted += 1
            assert target == foreign, (target, seq, error)
        else:
            admitted += 1
            assert (error["code"], target, seq) == ("INVALID_ARGUMENT", room, HEAD + 1), error
    print(f"{protocol}/{limits}: {MARKS} marks in {elapsed:.2f} s: {admitted} admitted "
          f"({dict(codes)} refused), {writes:.0f} history writes, {stream} user events")  # fmt: skip
    assert last_id == 99 and after["ok"] is True, after
    assert after["rooms"][0]["readSeq"] == read_seq  # type: ignore[index]
    assert writes <= admitted
    if limits == "none":
        assert writes < admitted, "marks in flight together share writes"
    if limits == "deployed":
        burst, rate = int(DEPLOYED_LIMITS["GATEWAY_RATE_BURST"]), 20
        assert admitted <= burst + rate * elapsed + 1, (admitted, elapsed)
    else:
        assert admitted == MARKS
    assert stream == len(states) and 0 < stream <= moves <= HEAD, (stream, moves, len(states))
    assert [s["readSeq"] for s in states] == sorted({s["readSeq"] for s in states})
    assert stack_errors(stack.services) == {}
