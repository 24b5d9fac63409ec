"""SIGTERM of a gateway under load: readiness first, in-flight answered, 1012, resume."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import pytest

from tests.conftest import MakeStack
from tests.support.clients import NativeClient, SioClient, unique_room
from tests.support.http import get_json
from tests.support.rawws import native_join
from tests.support.traffic import Ledger, Sender, check_deliveries

pytestmark = pytest.mark.integration

GRACE_S = 5.0
CLOSE_TIMEOUT_S = 1.5


async def test_gateway_sigterm_under_load(make_stack: MakeStack) -> None:
    """Readiness goes false before any client is closed (and stays false while a client
    that vanished without a FIN holds the close up); every client gets 1012 and the
    Socket.IO ones resume; every send got a reply; the gateway exits 0 within its grace."""
    env = {"GATEWAY_SESSION_HEARTBEAT_S": "0.5", "GATEWAY_CLOSE_TIMEOUT_S": str(CLOSE_TIMEOUT_S)}
    stack = await make_stack(gateways=2, balancer=True, env=env)
    victim = stack.of_kind("gateway")[0]
    direct_url = victim.public_url
    assert direct_url is not None
    room = unique_room()
    sio = [SioClient(reconnection=True) for _ in range(20)]
    await asyncio.gather(*(c.connect(stack.client_url) for c in sio))
    native = [await NativeClient().connect(direct_url) for _ in range(5)]
    for i, c in enumerate([*sio, *native]):
        assert (await c.call("join", {"email": f"g{i}@example.com", "roomId": room}))["ok"]
    # A peer that vanished (no FIN): its close is not answered, so the shutdown waits up to
    # the close timeout for it, and readiness must say 503 all that time (on a busy machine
    # the rest of the shutdown can be over before a poll gets through).
    vanished = await native_join(direct_url, "vanished@example.com", room)
    vanished.go_silent()

    ledger = Ledger()
    senders = [
        Sender(c, room, ledger, name=f"g{i}", count=40, pause_s=0.01) for i, c in enumerate(sio)
    ]
    traffic = asyncio.ensure_future(asyncio.gather(*(s.run() for s in senders)))
    await asyncio.wait_for(ledger.reached(200), 60)

    ready_url = f"http://127.0.0.1:{victim.http_port}/readyz"
    after_term: list[int] = []
    terminated = asyncio.Event()

    async def poll_readiness() -> None:
        while True:
            sent_after_term = terminated.is_set()
            try:
                status, _ = await get_json(ready_url, timeout=5)
            except TimeoutError:
                continue  # a loaded machine: ask again, the port is still there
            except Exception:
                return  # the ops port is gone: the process is exiting
            if sent_after_term:
                after_term.append(status)

    poller = asyncio.ensure_future(poll_readiness())
    assert victim.pid is not None
    began = time.monotonic()
    os.kill(victim.pid, signal.SIGTERM)
    terminated.set()
    closed_at = []
    for c in native:
        await asyncio.wait_for(c.closed.wait(), GRACE_S + 5)
        closed_at.append(time.monotonic())
    exit_code = await victim.wait()
    elapsed = time.monotonic() - began
    await poller

    assert exit_code == 0
    assert elapsed < GRACE_S
    assert elapsed >= CLOSE_TIMEOUT_S, "the exit waited for the vanished peer's close to end"
    assert [c.close_code for c in native] == [1012] * 5
    vanished.abort()
    assert after_term and set(after_term) == {503}, "never ready again once SIGTERM arrived"
    events = [
        json.loads(line)["event"]
        for line in victim.log_path.read_text().splitlines()
        if line.startswith("{")
    ]
    last_run = events[len(events) - 1 - events[::-1].index("readiness false: shutting down") :]
    phases = [e for e in last_run if e in {"readiness false: shutting down", "shutdown phase"}]
    assert phases[0] == "readiness false: shutting down"
    log = victim.log_path.read_text()
    assert log.rindex('"readiness false: shutting down"') < log.rindex('"phase": "CLOSE_CLIENTS"')
    assert '"no task left pending at exit"' in log[log.rindex('"readiness false: shutting down"') :]

    await victim.start()
    await victim.wait_ready(timeout=30)
    await asyncio.wait_for(traffic, 120)
    assert ledger.hung == 0
    # A send still in the network when the close frame goes out is dropped by the client
    # and retried; a send the gateway had received was answered before the close.
    assert ledger.lost_replies == 0, f"a processed send lost its reply: {ledger.errors}"
    moved = [c for c in sio if len(c.connects) > 1]
    assert moved, "some Socket.IO clients were on the terminated gateway"
    for c in sio:
        assert all(c.connects[1:]), "every reconnect recovered"
        await c.wait_messages(room, ledger.max_seq(room), timeout=30)
        check_deliveries(c, room, ledger)
        assert [
            e
            for e in c.of("user_left")
            if e["email"].startswith("g") and int(e["email"][1:].split("@")[0]) < 20
        ] == []
    await asyncio.gather(*(c.close() for c in sio))
