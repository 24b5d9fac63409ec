"""Micro-benchmark: the CPU of one NATS request/reply between two nats-py clients.

    .venv/bin/python bench/nats_request.py [--requests 4000] [--size 300]

Starts its own nats-server, then one client answers ``bench.x`` and another requests it
``--requests`` times, one at a time. Prints the CPU (user + system) of this process per
round trip: both Python ends (requester and responder), not the server. It is what one
``chat.history.append`` per message cost the gateway and history before appends were
batched (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import time

import nats
import uvloop

from chat_devstack.binaries import nats_server_path
from chat_devstack.ports import free_port


async def _run(url: str, requests: int, size: int) -> None:
    responder, requester = await nats.connect(url), await nats.connect(url)

    async def answer(msg: nats.aio.msg.Msg) -> None:
        await msg.respond(b"ok")

    await responder.subscribe("bench.x", cb=answer)
    payload = b"x" * size
    before, began = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(requests):
        await requester.request("bench.x", payload, timeout=5)
    after, ended = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(
        f"{requests} requests of {size} B: {cpu / requests * 1e6:.0f} µs CPU per round trip "
        f"(both ends), {(ended - began) / requests * 1e6:.0f} µs wall"
    )
    await responder.close()
    await requester.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--size", type=int, default=300)
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen(
        [str(nats_server_path()), "-p", str(port), "-a", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)  # the server binds its port (a benchmark, not a test)
        uvloop.run(_run(f"nats://127.0.0.1:{port}", args.requests, args.size))
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
