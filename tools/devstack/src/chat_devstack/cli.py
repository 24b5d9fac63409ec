"""``chat-stack``: run the local system (``run``) or just its servers (``servers``).

``NATS_URL``, ``REDIS_URL`` and ``DATABASE_URL``, when set, point at external servers that
are used instead of starting ours. Ctrl-C or SIGTERM stops services first and servers last
and exits 0; a second Ctrl-C kills everything at once. A process that dies on its own is
restarted on the same ports and data after a backoff (0.5 s doubling to 30 s, see
:mod:`chat_devstack.restart`), and the exit code, the attempt, the delay and the end of its
log are printed on stderr; the rest keeps running. Only a failed first start exits (code 1).
With ``--gateways`` above 1, a TCP balancer on ``--port`` spreads clients over the
gateways, which take the next free ports; with ``--shared-port`` as well, the gateways all
listen on ``--port`` (``SO_REUSEPORT``) and the kernel spreads clients instead.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .binaries import redis_cli_path
from .errors import DevstackError
from .ha import HaServers
from .postgres_server import PostgresServer
from .restart import RestartPolicy
from .stack import Stack, StackConfig

__all__ = ["build_parser", "config_from_args", "describe", "main", "serve"]


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(prog="chat-stack", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="start servers and the gateway/session/history services")
    servers = commands.add_parser("servers", help="start only NATS, Redis and Postgres")
    for sub in (run, servers):
        sub.add_argument("--data-dir", type=Path, default=Path(".data"), help="default: .data")
        sub.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
        sub.add_argument("--nats-port", type=int, default=0, help="default: any free port")
        sub.add_argument("--redis-port", type=int, default=0, help="default: any free port")
        sub.add_argument("--pg-port", type=int, default=0, help="default: any free port")
    run.add_argument("--gateways", type=int, metavar="N", help="default 1 (2 with --ha)")
    run.add_argument("--sessions", type=int, metavar="N", help="default 1 (2 with --ha)")
    run.add_argument(
        "--history", type=int, metavar="N", dest="histories", help="default 1 (2 with --ha)"
    )
    run.add_argument(
        "--port",
        type=int,
        default=8080,
        help="where clients connect (8080): the balancer's port with --gateways > 1",
    )
    for sub in (run, servers):
        sub.add_argument(
            "--ha",
            action="store_true",
            help="the production topology: 3 NATS nodes in a cluster, a Redis Cluster of 6"
            " (3 primaries, 3 replicas), a Postgres primary with a synchronous standby",
        )
    run.add_argument(
        "--shared-port",
        action="store_true",
        help="with --gateways > 1: every gateway listens on --port itself (SO_REUSEPORT,"
        " the kernel spreads connections; one gateway per core) instead of a balancer",
    )
    return parser


def config_from_args(args: argparse.Namespace, environ: Mapping[str, str]) -> StackConfig:
    """A :class:`StackConfig` from parsed arguments and the environment."""
    services = args.command == "run"

    def count(given: int | None) -> int:
        if not services:
            return 0
        return given if given is not None else 2 if args.ha else 1

    gateways = count(args.gateways) if services else 0
    return StackConfig(
        data_dir=args.data_dir,
        gateways=gateways,
        sessions=count(getattr(args, "sessions", None)),
        histories=count(getattr(args, "histories", None)),
        gateway_port=args.port if services else 0,
        balancer=services and gateways > 1 and not args.shared_port,
        shared_port=services and gateways > 1 and args.shared_port,
        ha=args.ha,
        host=args.host,
        nats_url=environ.get("NATS_URL") or None,
        redis_url=environ.get("REDIS_URL") or None,
        postgres_dsn=environ.get("DATABASE_URL") or None,
        nats_port=args.nats_port,
        redis_port=args.redis_port,
        postgres_port=args.pg_port,
        extra_env=_local_defaults(args, environ),
    )


def _local_defaults(args: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, str]:
    """What the local stack sets unless the caller's environment already does: readable
    logs, development mode (no tokens; the gateway warns loudly) and localhost origins."""
    defaults = {f"{kind}_LOG_FORMAT": "text" for kind in ("GATEWAY", "SESSION", "HISTORY")}
    defaults["GATEWAY_AUTH_MODE"] = "dev"
    port = getattr(args, "port", 8080)
    defaults["GATEWAY_ALLOWED_ORIGINS"] = f'["http://localhost:{port}", "http://127.0.0.1:{port}"]'
    return {k: v for k, v in defaults.items() if k not in environ}


def describe(stack: Stack) -> str:
    """Where to connect, what runs where, and how long it took to start."""
    lines = [f"chat stack is up (data: {stack.data_dir})"]
    gateways = stack.of_kind("gateway")
    urls = [stack.balancer.url] if stack.balancer is not None else stack.gateway_urls
    urls = list(dict.fromkeys(urls))  # gateways sharing one port share one URL
    if stack.balancer is not None:
        lines.append(f"  connect to   {urls[0]}  (balancer over {len(gateways)} gateways)")
    elif stack.config.shared_port:
        lines.append(f"  connect to   {urls[0]}  ({len(gateways)} gateways share this port)")
    for url in urls:
        ws = url.replace("http://", "ws://", 1)
        lines += [
            f"  web page     {url}  (open in a browser)",
            f"  Socket.IO    {url}  (path /socket.io/)",
            f"  native WS    {ws}ws",
        ]
    if stack.balancer is not None:
        lines += [f"  {g.name:<12} {g.public_url}  (this gateway only)" for g in gateways]
    for service in stack.services:
        lines.append(f"  {service.name:<12} {service.health_url}  log {service.log_path}")
    lines.append("")
    external = " (external)"
    if stack.ha is not None:
        lines += _describe_ha(stack.ha)
    external = "" if stack.nats or stack.ha else external
    lines.append(f"  NATS         {stack.nats_url}{external}")
    seeds = stack.nats_seed_files
    if seeds:
        lines.append(f"  NATS keys    {min(seeds.values()).parent}  (one NKey seed per identity)")
    operator = f" CHATCTL_NATS_NKEY_SEED_FILE={seeds['operator']}" if "operator" in seeds else ""
    lines.append(f"  chatctl      export CHATCTL_NATS_URL={stack.nats_url}{operator}")
    external = "" if stack.redis or stack.ha else " (external)"
    lines.append(f"  Redis        {stack.redis_url}{external}")
    external = "" if stack.postgres or stack.ha else " (external)"
    lines.append(f"  Postgres     {stack.postgres_dsn}{external}")
    for server in stack.servers:
        lines.append(f"  {server.name + ' log':<12} {server.log_path}")
    if not stack.services:
        lines += [
            "",
            "  To run a service by hand against these servers:",
            f"    export NATS_URL={stack.nats_url} REDIS_URL={stack.redis_url}"
            f" DATABASE_URL={stack.postgres_dsn}",
            "    GATEWAY_NATS_URL=$NATS_URL SESSION_NATS_URL=$NATS_URL"
            " SESSION_REDIS_URL=$REDIS_URL HISTORY_NATS_URL=$NATS_URL"
            " HISTORY_POSTGRES_DSN=$DATABASE_URL",
        ]
        lines += [
            f"    {kind.upper()}_NATS_NKEY_SEED_FILE={seeds[kind]}"
            for kind in ("gateway", "session", "history")
            if kind in seeds
        ]
    timings = ", ".join(f"{name} {sec:.2f}s" for name, sec in stack.startup_seconds.items())
    lines += ["", f"  started in: {timings}", "", "Press Ctrl-C to stop."]
    return "\n".join(lines)


def _describe_ha(ha: HaServers) -> list[str]:
    """Each node of the clustered servers, and how to watch the system survive losing one."""
    lines = ["  Production topology (--ha): kill -9 any one node and the system carries on."]
    for node in ha.servers:
        role = ""
        if isinstance(node, PostgresServer):
            role = " standby" if node.is_standby else " primary"
        lines.append(
            f"    {node.label:<8} port {node.port:<6} pid {node.process.pid if node.process else '-'}{role}"
        )
    cli = redis_cli_path()
    first = ha.redis.nodes[0]
    lines += [
        "  Try it (in another terminal, with traffic flowing, e.g. the web page open twice):",
        "    kill -9 <pid of a nats node>        clients and services move to the other two",
        f"    {cli} -p {first.port} cluster nodes   shows which Redis nodes are primaries;",
        "    kill -9 <pid of a Redis primary>    its replica takes over within ~2 s",
        "    kill -9 <pid of the pg primary>     the standby is promoted (as Patroni would),",
        "                                        the old primary comes back as its standby",
        "                                        (pg_rewind); every acked message is kept",
        "    chatctl status                      each service instance still answers",
        "  The supervisor below restarts each killed node; watch its messages.",
        "",
    ]
    return lines


async def _first(*aws: asyncio.Future[Any]) -> asyncio.Future[Any]:
    """Wait for the first of ``aws`` to finish; cancel the others; return the winner."""
    done, pending = await asyncio.wait(aws, return_when=asyncio.FIRST_COMPLETED)
    for future in pending:
        future.cancel()
    return next(iter(done))


def _report(message: str) -> None:
    """How the supervisor's messages reach the operator: stamped, on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def _stop(stack: Stack, supervisor: asyncio.Future[None]) -> None:
    """End the supervisor (no restart after this), then stop services and servers."""
    supervisor.cancel()
    await asyncio.gather(supervisor, return_exceptions=True)
    await stack.stop()


async def serve(config: StackConfig, *, restart: RestartPolicy | None = None) -> int:
    """Start the stack, restart what dies until a signal comes, stop it; return the exit code.

    ``restart`` is the backoff for parts that die (default: :class:`RestartPolicy()`).
    """
    loop = asyncio.get_running_loop()
    stop, force = asyncio.Event(), asyncio.Event()

    def on_signal() -> None:
        (force if stop.is_set() else stop).set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    stack = Stack(config)
    code = 0
    print(f"starting chat stack in {stack.data_dir} ...", flush=True)
    started = asyncio.ensure_future(stack.start())
    stopped = asyncio.ensure_future(stop.wait())
    if await _first(started, stopped) is stopped:
        print("interrupted during startup; stopping", flush=True)
        await asyncio.gather(started, return_exceptions=True)  # cancelled start() cleans up
        return 0
    if (error := started.exception()) is not None:
        print(f"startup failed: {error}", file=sys.stderr, flush=True)
        return 1
    print(describe(stack), flush=True)
    stopped = asyncio.ensure_future(stop.wait())
    supervisor = asyncio.ensure_future(stack.supervise(restart, report=_report))
    await asyncio.wait({stopped, supervisor}, return_when=asyncio.FIRST_COMPLETED)
    if supervisor.done():  # it only ends by failing
        stopped.cancel()
        error = supervisor.exception()
        print(f"supervisor failed: {error!r}; stopping everything", file=sys.stderr, flush=True)
        code = 1
    print("stopping: services first, then servers ...", flush=True)
    stopping = asyncio.ensure_future(_stop(stack, supervisor))
    forced = asyncio.ensure_future(force.wait())
    if await _first(stopping, forced) is forced:
        print("second signal: killing everything", flush=True)
        await stack.kill()
    elif (error := stopping.exception()) is not None:
        print(f"stop failed: {error}; killing what is left", file=sys.stderr, flush=True)
        await stack.kill()
        code = 1
    print("stopped.", flush=True)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``chat-stack`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(serve(config_from_args(args, os.environ)))
    except DevstackError as exc:
        print(f"chat-stack: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
