"""An OTLP/HTTP trace sink for benchmarks: takes every export and throws it away.

    .venv/bin/python bench/otlp_sink.py      # prints its port, then serves until killed

What a benchmark of the configuration we ship needs: the services export their spans over
the network as deployed (to Jaeger, docker-compose.yml), and the receiving end costs the
system under test nothing but the export itself. It runs as its own process, so that it
does not share the load generator's loop; it counts requests and bytes, decodes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

from aiohttp import web

_EMPTY = b""
"""An ExportTraceServiceResponse with no field set encodes to no bytes."""


async def main() -> None:
    received = {"requests": 0, "bytes": 0}

    async def traces(request: web.Request) -> web.Response:
        received["requests"] += 1
        received["bytes"] += len(await request.read())
        return web.Response(body=_EMPTY, content_type="application/x-protobuf")

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/traces", traces)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(port, flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        print(f"received {received['requests']} exports, {received['bytes']} bytes",
              file=sys.stderr, flush=True)  # fmt: skip


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
