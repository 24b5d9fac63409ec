"""The gateway's wire behaviour, byte for byte, against a golden frame trace.

One scenario drives a private stack (its own NATS and database, dev auth as in
``FAST_SETTINGS``) over raw TCP, strictly step by step, and records every byte the gateway
sends (:mod:`tests.support.frametrace`): Socket.IO v5 over long-polling (handshake, CONNECT
with an auth object, a join with its ack), the upgrade to WebSocket (``2probe``/``3probe``,
the held GET released with a noop, ``5``), events over the WebSocket (acks, ``new_message``
with its resume offset, ``get_history``, ``get_members``, an unknown event, a malformed
payload, a failing event without an ack id), a native ``/ws`` client in the same room, the
Socket.IO client dropping and recovering its session by ``pid`` and ``offset`` on a new
WebSocket (the missed messages follow, then each room's ``read_state``), a native
``resume`` that takes its session over from a connection still open (closed with 4009),
read state and the inbox (``mark_read`` with ``read_state``, refused marks, ``get_rooms``
pages with a cursor, ``inbox_update``, ``unsubscribe`` with ``membership``), a ``leave``,
and goodbye closes (1000).
Random values (sids, pids, session ids, tokens, message ids, timestamps, the
``Sec-WebSocket-Accept``) are replaced by placeholders numbered in order of first
appearance, so equal values stay visibly equal.

The golden file ``frame_trace.golden.txt`` was recorded at commit 3f78141 (the baseline of
the gateway refactor), and again when durable membership (4.13) added the join ack's
``role``/``readSeq``/``lastSeq``/``unread`` and the user events, with the steps that pin
them. It must not change unless the wire behaviour changes on purpose; a
refactor that keeps the behaviour leaves it byte for byte as it is. On a mismatch the test
shows a unified diff and keeps the new trace in its ``tmp_path``. To record it again after
an intended change, run::

    FRAME_TRACE_RECORD=1 .venv/bin/python -m pytest tests/integration/test_frame_trace.py

and review the diff of the golden file like code.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from chat_devstack.stack import Stack
from chat_session.redisstore import RedisSessionStore
from tests.conftest import MakeStack
from tests.support.frametrace import HttpClient, Trace, TracedWs
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

GOLDEN = Path(__file__).with_name("frame_trace.golden.txt")
RECORD = os.environ.get("FRAME_TRACE_RECORD") == "1"

LOBBY, DEV, ELSEWHERE = "trace-lobby", "trace-dev", "trace-elsewhere"
SIO_EMAIL, NATIVE_EMAIL = "trace-sio@example.com", "trace-native@example.com"
POLLING = "/socket.io/?EIO=4&transport=polling"
SIO_WS = "/socket.io/?EIO=4&transport=websocket"


def _sio(ack: int | None, event: str, data: object) -> str:
    """A Socket.IO EVENT packet on ``/`` as official clients write it."""
    head = "42" if ack is None else f"42{ack}"
    return head + json.dumps([event, data], separators=(",", ":"), ensure_ascii=False)


def _sio_args(packet: str) -> list[Any]:
    """The JSON array of an EVENT or ACK packet (``42[...]``, ``431[...]``)."""
    args: list[Any] = json.loads(packet[packet.index("[") :])
    return args


def _last_offset(packets: list[str]) -> str:
    """The resume offset of the last ``new_message`` among ``packets``."""
    messages = [p for p in packets if p.startswith('42["new_message"')]
    offset: str = _sio_args(messages[-1])[2]
    return offset


async def _session_detached(stack: Stack, session_id: str) -> None:
    """Wait until the session service holds ``session_id`` as dropped (no connection)."""
    redis = Redis.from_url(stack.redis_url, decode_responses=True)
    store = RedisSessionStore(redis, prefix=stack.config.extra_env["SESSION_KEY_PREFIX"])

    async def detached() -> bool:
        record = await store.get(session_id)
        return record is not None and record.conn == ""

    try:
        await eventually(detached, timeout=15)
    finally:
        await redis.aclose()


async def _scenario(stack: Stack, trace: Trace) -> None:
    """Drive the stack step by step (each waits for the frames it causes) into ``trace``."""
    url = stack.client_url
    trace.literals[url.rstrip("/").removeprefix("http://")] = "<host>:<port>"
    http = HttpClient(trace, "sio-http", url)

    # -- Socket.IO over long-polling ------------------------------------------------------

    with trace.step("Socket.IO: long-polling handshake (the open packet)"):
        opened = await http.request("GET", POLLING)
        session_target = f"{POLLING}&sid={json.loads(opened.body[1:])['sid']}"

    with trace.step("Socket.IO: CONNECT to / with an auth object, POSTed under a held GET"):
        held = await http.send("GET", session_target)
        await http.request("POST", session_target, b'40{"token":"frame-trace"}')
        pid = json.loads((await held.response()).body[2:])["pid"]

    with trace.step("Socket.IO: join with ack id 1 under a held GET; then user_joined"):
        # A GET is always held, as Engine.IO clients keep one: the ack then leaves alone
        # (the body does not depend on when the GET came), and user_joined follows.
        held = await http.send("GET", session_target)
        join = _sio(1, "join", {"email": SIO_EMAIL, "roomId": LOBBY})
        await http.request("POST", session_target, join.encode())
        polled = (await held.response()).body
        while b"431[" not in polled or b'42["user_joined"' not in polled:
            polled += (await http.request("GET", session_target)).body

    # -- the upgrade ----------------------------------------------------------------------

    with trace.step("upgrade: 2probe/3probe, the held GET released with a noop, then 5"):
        upgrade = session_target.replace("transport=polling", "transport=websocket")
        ws = await TracedWs.connect(trace, "sio-ws", url, upgrade, engineio=True)
        held = await http.send("GET", session_target)
        ws.send_text("2probe")
        await ws.expect("3probe")
        assert (await held.response()).body == b"6"
        ws.send_text("5")

    with trace.step("Socket.IO: join a second (empty) room over the WebSocket"):
        ws.send_text(_sio(2, "join", {"email": SIO_EMAIL, "roomId": DEV}))
        await ws.expect("432[", '42["user_joined"')

    with trace.step("after the upgrade, HTTP requests for the sid are refused"):
        assert (await http.request("GET", session_target)).status == 400

    # -- events over the WebSocket --------------------------------------------------------

    with trace.step("Socket.IO: send_message with ack: its ack, and new_message with its offset"):
        data = {"roomId": LOBBY, "text": "hello from socket.io", "clientMsgId": "sio-1"}
        ws.send_text(_sio(3, "send_message", data))
        offset = _last_offset(await ws.expect("433[", '42["new_message"'))

    with trace.step("Socket.IO: get_history"):
        ws.send_text(_sio(4, "get_history", {"roomId": LOBBY, "limit": 10}))
        await ws.expect("434[")

    with trace.step("Socket.IO: get_members"):
        ws.send_text(_sio(5, "get_members", {"roomId": LOBBY}))
        await ws.expect("435[")

    with trace.step("Socket.IO: an unknown event, with ack id"):
        ws.send_text(_sio(6, "nudge", {"roomId": LOBBY}))
        await ws.expect("436[")

    with trace.step("Socket.IO: a malformed payload (no roomId), with ack id"):
        ws.send_text(_sio(7, "send_message", {"text": "where to?"}))
        await ws.expect("437[")

    with trace.step("Socket.IO: a failing event without ack id: an error event"):
        ws.send_text(_sio(None, "send_message", {"roomId": ELSEWHERE, "text": "not a member"}))
        await ws.expect('42["error"')

    # -- a native client in the same room -------------------------------------------------

    with trace.step("native: join the room; the Socket.IO client sees user_joined"):
        native = await TracedWs.connect(trace, "native", url, "/ws", engineio=False)
        native.send_json(
            {"type": "join", "id": 1, "data": {"email": NATIVE_EMAIL, "roomId": LOBBY}}
        )
        ack = json.loads((await native.expect('{"type":"ack"', '{"type":"user_joined"'))[0])
        native_session = {k: ack["data"][k] for k in ("sessionId", "resumeToken")}
        await ws.expect('42["user_joined"')

    with trace.step("native: send_message with a clientMsgId"):
        data = {"roomId": LOBBY, "text": "hi from native", "clientMsgId": "native-1"}
        native.send_json({"type": "send_message", "id": 2, "data": data})
        await native.expect('{"type":"ack"', '{"type":"new_message"')
        offset = _last_offset(await ws.expect('42["new_message"'))

    with trace.step("native: send_message without clientMsgId, non-ASCII text"):
        data = {"roomId": LOBBY, "text": "héllo ✓ «ünïcode» 🚀"}
        native.send_json({"type": "send_message", "id": 3, "data": data})
        await native.expect('{"type":"ack"', '{"type":"new_message"')
        offset = _last_offset(await ws.expect('42["new_message"'))

    with trace.step("native: an unknown event without id: an error event"):
        native.send_json({"type": "nudge", "data": {"roomId": LOBBY}})
        await native.expect('{"type":"error"')

    # -- the Socket.IO client drops and recovers ------------------------------------------

    with trace.step("Socket.IO: the client drops (TCP closed, no close frame)"):
        await ws.drop()
        await _session_detached(stack, pid.split(".")[0])
        trace.note("waited until the session service holds the session as dropped")

    with trace.step("native: two messages while the Socket.IO client is away"):
        for n in (4, 5):
            data = {"roomId": LOBBY, "text": f"missed {n - 3}", "clientMsgId": f"native-{n}"}
            native.send_json({"type": "send_message", "id": n, "data": data})
            await native.expect('{"type":"ack"', '{"type":"new_message"')

    with trace.step("Socket.IO: a new WebSocket recovers the session by pid and offset"):
        sio = await TracedWs.connect(trace, "sio-ws2", url, SIO_WS, engineio=True)
        await sio.expect("0{")
        sio.send_text("40" + json.dumps({"pid": pid, "offset": offset}, separators=(",", ":")))
        got = await sio.expect(
            "40{", '42["new_message"', '42["new_message"', '42["read_state"', '42["read_state"'
        )
        assert json.loads(got[0][2:])["pid"] == pid, "the session was recovered"

    # -- a takeover -----------------------------------------------------------------------

    with trace.step("native: resume on a new /ws while the old one is open: the old gets 4009"):
        native2 = await TracedWs.connect(trace, "native2", url, "/ws", engineio=False)
        resume = {**native_session, "lastSeq": {LOBBY: 3}}
        native2.send_json({"type": "resume", "id": 1, "data": resume})
        got = await native2.expect(
            '{"type":"ack"', '{"type":"new_message"', '{"type":"new_message"'
        )  # the ack carries the rooms' read state (readState)
        assert json.loads(got[0])["data"]["recovered"] is True
        assert await native.expect_close(answer=True) == 4009

    with trace.step("Socket.IO: send_message; both live connections get it"):
        data = {"roomId": LOBBY, "text": "still here", "clientMsgId": "sio-2"}
        sio.send_text(_sio(1, "send_message", data))
        await sio.expect("431[", '42["new_message"')
        await native2.expect('{"type":"new_message"')

    # -- read state and the inbox (4.13) --------------------------------------------------

    with trace.step("native: mark_read to the head: read_state to the user's connections, the ack"):
        native2.send_json({"type": "mark_read", "id": 3, "data": {"roomId": LOBBY, "seq": 6}})
        await native2.expect('{"type":"read_state"', '{"type":"ack"')

    with trace.step("native: mark_read beyond the head, and on a room of others: refused"):
        native2.send_json({"type": "mark_read", "id": 4, "data": {"roomId": LOBBY, "seq": 7}})
        await native2.expect('{"type":"ack"')
        native2.send_json({"type": "mark_read", "id": 5, "data": {"roomId": DEV, "seq": 0}})
        await native2.expect('{"type":"ack"')

    with trace.step("Socket.IO: leave a room (still a member), then get_rooms: a first page"):
        sio.send_text(_sio(2, "leave", {"roomId": DEV}))
        await sio.expect("432[")
        sio.send_text(_sio(3, "get_rooms", {"limit": 1}))
        cursor = _sio_args((await sio.expect("433["))[-1])[0]["next"]

    with trace.step("Socket.IO: get_rooms with the cursor: the last page"):
        sio.send_text(_sio(4, "get_rooms", {"after": cursor, "limit": 1}))
        await sio.expect("434[")

    with trace.step("native: joins and writes in the room Socket.IO left: its inbox_update"):
        native2.send_json({"type": "join", "id": 6, "data": {"email": NATIVE_EMAIL, "roomId": DEV}})
        await native2.expect('{"type":"membership"', '{"type":"ack"', '{"type":"user_joined"')
        data = {"roomId": DEV, "text": "in the other room", "clientMsgId": "native-6"}
        native2.send_json({"type": "send_message", "id": 7, "data": data})
        await native2.expect('{"type":"ack"', '{"type":"new_message"')
        await sio.expect('42["inbox_update"')

    with trace.step("Socket.IO: unsubscribe: membership to the user's connections, the ack"):
        sio.send_text(_sio(5, "unsubscribe", {"roomId": DEV}))
        await sio.expect('42["membership"', "435[")

    with trace.step("Socket.IO: mark_read on the room it unsubscribed: NOT_MEMBER"):
        sio.send_text(_sio(6, "mark_read", {"roomId": DEV, "seq": 1}))
        await sio.expect("436[")

    # -- leave and goodbyes ---------------------------------------------------------------

    with trace.step("native: leave; the Socket.IO client sees user_left"):
        native2.send_json({"type": "leave", "id": 2, "data": {"roomId": LOBBY}})
        await native2.expect('{"type":"ack"')
        await sio.expect('42["user_left"')

    with trace.step("native: goodbye close (1000)"):
        native2.send_close(1000)
        assert await native2.expect_close(answer=False) == 1000

    with trace.step("Socket.IO: goodbye close (1000)"):
        sio.send_close(1000)
        assert await sio.expect_close(answer=False) == 1000


async def test_the_gateway_wire_behaviour_matches_the_golden_trace(
    make_stack: MakeStack, tmp_path: Path
) -> None:
    """Every byte the gateway sends in the scenario (random values normalised) is the same
    as in the golden trace."""
    stack = await make_stack()
    trace = Trace()
    try:
        await _scenario(stack, trace)
    except Exception as exc:
        partial = trace.render()
        pytest.fail(f"the scenario broke off ({exc!r}); the trace so far:\n{partial}")
    actual = trace.render()
    if RECORD:
        GOLDEN.write_text(actual, encoding="utf-8")
    expected = GOLDEN.read_text(encoding="utf-8")
    if actual != expected:
        (tmp_path / GOLDEN.name).write_text(actual, encoding="utf-8")
        diff = difflib.unified_diff(
            expected.splitlines(keepends=True),
            actual.splitlines(keepends=True),
            fromfile=f"golden {GOLDEN.name}",
            tofile=f"this run ({tmp_path / GOLDEN.name})",
        )
        pytest.fail("the gateway's wire behaviour changed:\n" + "".join(diff), pytrace=False)
