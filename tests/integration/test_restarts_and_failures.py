"""Stopping, losing and sabotaging services: history survives, failures get clear codes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.conftest import MakeStack
from tests.support.clients import NativeClient, SioClient, unique_room

pytestmark = pytest.mark.integration


async def test_history_survives_stopping_and_starting_all_services(make_stack: MakeStack) -> None:
    """After every service is stopped and started again, get_history returns the messages."""
    stack = await make_stack()
    room = unique_room()
    c = await SioClient().connect(stack.gateway_urls[0])
    sent = []
    try:
        await c.call("join", {"email": "keeper@example.com", "roomId": room})
        for i in range(5):
            sent.append(
                (await c.call("send_message", {"roomId": room, "text": f"keep {i}"}))["message"]
            )
    finally:
        await c.close()
    await stack.stop_services()
    await stack.start_services()
    c = await SioClient().connect(stack.gateway_urls[0])
    try:
        joined = await c.call("join", {"email": "keeper@example.com", "roomId": room})
        assert joined["history"] == sent
        page = await c.call("get_history", {"roomId": room})
        assert page["messages"] == sent
        nxt = await c.call("send_message", {"roomId": room, "text": "after restart"})
        assert nxt["message"]["seq"] == 6
    finally:
        await c.close()


async def test_history_down_gives_unavailable_fast_then_recovers(make_stack: MakeStack) -> None:
    """With no history instance, sends fail with UNAVAILABLE within the deadline; they work again after a restart."""
    stack = await make_stack()
    (history,) = stack.of_kind("history")
    room = unique_room()
    c = await NativeClient().connect(stack.gateway_urls[0])
    try:
        await c.call("join", {"email": "patient@example.com", "roomId": room})
        await history.terminate()
        loop = asyncio.get_running_loop()
        began = loop.time()
        reply = await c.call(
            "send_message",
            {"roomId": room, "text": "nobody home", "clientMsgId": "u-1"},
            timeout=15,
        )
        assert reply["ok"] is False
        assert reply["error"]["code"] == "UNAVAILABLE"
        assert loop.time() - began < 10  # bounded by GATEWAY_SEND_DEADLINE_S, never a hang
        await history.start()
        await history.wait_ready(timeout=30)
        retry = await c.call(
            "send_message", {"roomId": room, "text": "nobody home", "clientMsgId": "u-1"}
        )
        assert retry["ok"] is True
        assert retry["message"]["seq"] == 1
    finally:
        await c.close()


async def test_session_service_killed_fails_joins_fast_then_recovers(make_stack: MakeStack) -> None:
    """With the session service SIGKILLed, joins fail fast with UNAVAILABLE while chat in
    joined rooms goes on; after a restart joins work again, nothing else restarted."""
    stack = await make_stack()
    (session,) = stack.of_kind("session")
    room = unique_room()
    early = await SioClient().connect(stack.gateway_urls[0])
    late = await SioClient().connect(stack.gateway_urls[0])
    try:
        await early.call("join", {"email": "early@example.com", "roomId": room})
        await session.kill()
        loop = asyncio.get_running_loop()
        began = loop.time()
        reply = await late.call("join", {"email": "late@example.com", "roomId": room}, timeout=15)
        assert reply["error"]["code"] == "UNAVAILABLE"
        assert loop.time() - began < 10
        send = await late.call("send_message", {"roomId": room, "text": "x"})
        assert send["error"]["code"] == "NOT_IN_ROOM"
        during = await early.call("send_message", {"roomId": room, "text": "still here"})
        assert during["ok"] is True
        await session.start()
        await session.wait_ready(timeout=30)
        joined = await late.call("join", {"email": "late@example.com", "roomId": room})
        assert joined["ok"] is True
        assert joined["users"] == ["early@example.com", "late@example.com"]
        assert [m["text"] for m in joined["history"]] == ["still here"]
        expected = {
            "roomId": room,
            "email": "late@example.com",
            "count": 2,
            "users": ["early@example.com", "late@example.com"],
        }
        await early.wait_for(lambda ev: ("user_joined", expected) in ev)
    finally:
        await early.close()
        await late.close()


async def test_unexpected_database_error_is_internal_and_harmless(make_stack: MakeStack) -> None:
    """A non-transient database error reaches the client as INTERNAL; the connection and other sends keep working."""
    stack = await make_stack()
    room = unique_room()
    c = await SioClient().connect(stack.gateway_urls[0])
    try:
        await c.call("join", {"email": "saboteur@example.com", "roomId": room})
        conn = await asyncpg.connect(stack.postgres_dsn)
        try:
            await conn.execute("ALTER TABLE messages ADD CONSTRAINT no_boom CHECK (body <> 'boom')")
        finally:
            await conn.close()
        boom = await c.call("send_message", {"roomId": room, "text": "boom"})
        assert boom == {"ok": False, "error": {"code": "INTERNAL", "message": "internal error"}}
        fine = await c.call("send_message", {"roomId": room, "text": "fine"})
        assert fine["ok"] is True and fine["message"]["seq"] == 1
        got = await c.wait_messages(room, 1)
        assert [m["text"] for m in got] == ["fine"]
    finally:
        await c.close()
    gateway_log = _json_lines(stack.of_kind("gateway")[0].log_path)
    history_log = _json_lines(stack.of_kind("history")[0].log_path)
    (failed,) = [
        r
        for r in gateway_log
        if r.get("code") == "INTERNAL" and r.get("client_event") == "send_message"
    ]
    trace_id = failed["trace_id"]
    assert len(trace_id) == 32 and trace_id != "0" * 32
    in_history = [r for r in history_log if r.get("trace_id") == trace_id and r["level"] == "error"]
    assert in_history, "the history service logged the failure in the same trace"
    assert all("boom" not in json.dumps(r) for r in gateway_log + history_log), (
        "no message bodies in logs"
    )


def _json_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]
