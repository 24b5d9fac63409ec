"""Test hosts (network namespaces on one bridge) and the faults between them, with real TCP:
a cut is silent both ways or one way, a degraded link delays and loses, a heal restores."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chat_devstack.commands import run_command
from chat_devstack.hosts import Host, HostNetwork
from chat_devstack.linkplan import Degraded
from chat_devstack.process import ManagedProcess

pytestmark = pytest.mark.integration

PORT = 7000
ECHO = f"""
import socket, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", {PORT})); s.listen()
def serve(c):
    while data := c.recv(100):
        c.sendall(data)
while True:
    threading.Thread(target=serve, args=(s.accept()[0],), daemon=True).start()
"""
PROBE = """
import json, socket, sys, time
began = time.monotonic()
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
    rtts = []
    for _ in range(5):
        t = time.monotonic(); c.sendall(b"x"); c.recv(1); rtts.append(time.monotonic() - t)
    print(json.dumps({"ok": True, "connect_s": time.monotonic() - began, "rtt_s": min(rtts)}))
except OSError as exc:
    print(json.dumps({"ok": False, "error": type(exc).__name__, "after_s": time.monotonic() - began}))
"""


async def _probe(src: Host | None, dst: Host, timeout: float = 1.5) -> dict[str, object]:
    """Connect from ``src`` (``None``: this namespace) to ``dst``'s echo server and time
    five round trips; or say why it failed."""
    out = await run_command(
        [sys.executable, "-c", PROBE, dst.address, str(PORT), str(timeout)],
        netns=src.netns if src is not None else None,
        timeout=60,
    )
    result: dict[str, object] = json.loads(out)
    return result


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[HostNetwork]:
    async with HostNetwork() as network:
        servers = []
        for name in ("a", "b"):
            host = await network.add(name)
            echo = ManagedProcess(
                f"echo-{name}",
                [sys.executable, "-c", ECHO],
                log_path=tmp_path / f"echo-{name}.log",
                netns=host.netns,
            )
            await echo.start()
            servers.append(echo)

        async def ready(host: Host) -> bool:
            return bool((await _probe(None, host, timeout=0.5))["ok"])

        for echo, name in zip(servers, ("a", "b"), strict=True):
            await echo.wait_ready(lambda h=network.hosts[name]: ready(h), timeout=30)
        try:
            yield network
        finally:
            for echo in servers:
                await echo.kill()


async def test_a_cut_is_silent_and_a_heal_restores_the_link(net: HostNetwork) -> None:
    """Cut A from B both ways: a connect from either side times out (no refusal, no reset:
    the packets vanish) while both still reach, and are reached by, the outside; healed,
    both connect again."""
    a, b = net.hosts["a"], net.hosts["b"]
    assert (await _probe(a, b))["ok"] and (await _probe(b, a))["ok"]
    net.plan.cut([a.address], [b.address])
    await net.apply()
    for src, dst in ((a, b), (b, a)):
        result = await _probe(src, dst, timeout=1.0)
        assert result["ok"] is False and result["error"] == "TimeoutError", result
    assert (await _probe(None, a))["ok"] and (await _probe(None, b))["ok"]
    await net.heal()
    assert (await _probe(a, b))["ok"] and (await _probe(b, a))["ok"]


async def test_a_one_way_cut_lets_the_other_direction_through(net: HostNetwork) -> None:
    """A's packets to B dropped, B's to A not: A's connect to B times out, and so does B's
    to A (B's SYN arrives, A's answer does not), while each host still reaches itself."""
    a, b = net.hosts["a"], net.hosts["b"]
    net.plan.cut([a.address], [b.address], both_ways=False)
    await net.apply()
    assert (await _probe(a, b, timeout=1.0))["ok"] is False
    assert (await _probe(b, a, timeout=1.0))["ok"] is False  # A's SYN-ACK is dropped
    assert (await _probe(a, a))["ok"] and (await _probe(b, b))["ok"]


async def test_the_outside_can_be_cut_from_one_host(net: HostNetwork) -> None:
    """Cutting A from the outside (the clients' side) leaves A and B talking."""
    a, b = net.hosts["a"], net.hosts["b"]
    net.plan.cut([net.outside], [a.address])
    await net.apply()
    assert (await _probe(None, a, timeout=1.0))["ok"] is False
    assert (await _probe(None, b))["ok"]
    assert (await _probe(b, a))["ok"] and (await _probe(a, b))["ok"]


async def test_a_degraded_link_delays_every_packet(net: HostNetwork) -> None:
    """200 ms each way between A and B: a round trip takes at least 400 ms; the outside's
    round trip to A stays fast; healed, the delayers stop and A-B is fast again."""
    a, b = net.hosts["a"], net.hosts["b"]
    net.plan.degrade([a.address], [b.address], Degraded(delay_ms=200))
    await net.apply()
    slow = await _probe(a, b, timeout=5)
    assert slow["ok"] and float(slow["rtt_s"]) >= 0.39, slow  # type: ignore[arg-type]
    await net.heal()
    began = time.monotonic()
    fast = await _probe(a, b)
    assert fast["ok"] and float(fast["rtt_s"]) < 0.39, fast  # type: ignore[arg-type]
    assert time.monotonic() - began < 30


async def test_a_lossy_link_loses_packets_and_tcp_retransmits(net: HostNetwork) -> None:
    """25% loss from A to B: of 40 round trips, the slowest took a TCP retransmission (over
    200 ms, the minimum RTO); healed, the link is clean. (At 60% loss, a SYN or a segment
    lost often enough in a row outlasted a 30 s timeout on CI; at 25%, with 60 s, that is
    under one run in a thousand.)"""
    a, b = net.hosts["a"], net.hosts["b"]
    net.plan.degrade([a.address], [b.address], Degraded(loss=0.25), both_ways=False)
    await net.apply()
    script = """
import socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=60)
worst = 0.0
for _ in range(40):
    t = time.monotonic(); c.sendall(b"x"); c.recv(1); worst = max(worst, time.monotonic() - t)
print(worst)
"""
    out = await run_command(
        [sys.executable, "-c", script, b.address, str(PORT)], netns=a.netns, timeout=100
    )
    assert float(out) >= 0.2
    await asyncio.wait_for(net.heal(), 30)
    assert (await _probe(a, b))["ok"]
