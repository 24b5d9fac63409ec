"""An OTLP/HTTP trace sink for benchmarks: takes every export and throws it away.

    .venv/bin/python bench/otlp_sink.py [--keep DIR]   # prints its port, serves until killed

What a benchmark of the configuration we ship needs: the services export their spans over
the network as deployed (to Jaeger, docker-compose.yml), and the receiving end costs the
system under test nothing but the export itself. It runs as its own process, so that it
does not share the load generator's loop; it counts requests and bytes, decodes nothing. ``--keep DIR`` also writes each export
(an ExportTraceServiceRequest) to a file there, for bench/critical_path.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from aiohttp import web

_EMPTY = b""
"""An ExportTraceServiceResponse with no field set encodes to no bytes."""


async def main(keep: Path | None) -> None:
    received = {"requests": 0, "bytes": 0}

    async def traces(request: web.Request) -> web.Response:
        received["requests"] += 1
        body = await request.read()
        received["bytes"] += len(body)
        if keep is not None:
            (keep / f"{received['requests']:08d}.pb").write_bytes(body)
        return web.Response(body=_EMPTY, content_type="application/x-protobuf")

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/traces", traces)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(port, flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await stop.wait()
    finally:
        print(f"received {received['requests']} exports, {received['bytes']} bytes",
              file=sys.stderr, flush=True)  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep", type=Path)
    keep_in: Path | None = parser.parse_args().keep
    if keep_in is not None:
        keep_in.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(keep_in))
