"""Stack starts servers and services in order, wires their environment, and stops
services before servers. The services here are stand-ins put first on PYTHONPATH."""

from __future__ import annotations

import json
import socket
import stat
from pathlib import Path
from typing import Any

import pytest

from chat_devstack.cli import describe
from chat_devstack.errors import DevstackError, ProcessExitedError
from chat_devstack.stack import Stack, StackConfig
from tests.support.fakeservices import write_fake_services

pytestmark = pytest.mark.integration

FAKE_SERVICE = """
    import asyncio, json, os, signal, socket, sys, time

    KIND = __package__.removeprefix("chat_")
    PREFIX = KIND.upper() + "_"

    async def readyz(reader, writer):
        await reader.readline()
        writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: 0\\r\\nConnection: close\\r\\n\\r\\n")
        await writer.drain()
        writer.close()

    def nats_up():
        host, port = os.environ[PREFIX + "NATS_URL"].removeprefix("nats://").split(":")
        try:
            socket.create_connection((host, int(port)), timeout=2).close()
            return True
        except OSError:
            return False

    async def main():
        if os.environ.get("FAKE_FAIL") == KIND:
            print(KIND, "refuses to start", flush=True)
            sys.exit(2)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await asyncio.start_server(readyz, "127.0.0.1", int(os.environ[PREFIX + "HTTP_PORT"]))
        await stop.wait()
        env = {k: v for k, v in os.environ.items() if k.startswith(PREFIX)}
        record = {"env": env, "nats_up": nats_up(), "stopped_ns": time.monotonic_ns()}
        path = os.path.join(os.environ["FAKE_OUT"], env[PREFIX + "INSTANCE_ID"] + ".json")
        with open(path, "w") as f:
            json.dump(record, f)

    asyncio.run(main())
"""


def _fake_services(tmp_path: Path) -> dict[str, str]:
    """Write stand-in chat_gateway/chat_session/chat_history packages; return extra_env."""
    return write_fake_services(tmp_path, FAKE_SERVICE)[0]


def _records(out: Path) -> dict[str, dict[str, Any]]:
    """What each stand-in service wrote when it was stopped, by instance id."""
    return {p.stem: json.loads(p.read_text()) for p in out.iterdir()}


async def test_stack_wires_services_and_stops_them_before_servers(tmp_path: Path) -> None:
    """Each service gets its URLs and ports; gateways stop first and NATS is still up then."""
    extra_env = _fake_services(tmp_path)
    config = StackConfig(data_dir=tmp_path / "data", gateways=2, gateway_port=0,
                         extra_env=extra_env)  # fmt: skip
    async with Stack(config) as stack:
        urls = stack.gateway_urls
        expected = {
            "gateway-1": ("GATEWAY_NATS_URL", stack.nats_url),
            "session-1": ("SESSION_REDIS_URL", stack.redis_url),
            "history-1": ("HISTORY_POSTGRES_DSN", stack.postgres_dsn),
        }
        ports = {s.name: (s.port, s.http_port) for s in stack.services}
        timings = dict(stack.startup_seconds)
        seeds = stack.nats_seed_files
        modes = {
            p: stat.S_IMODE(p.stat().st_mode)
            for p in [*seeds.values(), *{p.parent for p in seeds.values()}]
        }
        banner = describe(stack)
    records = _records(Path(extra_env["FAKE_OUT"]))
    assert sorted(records) == ["gateway-1", "gateway-2", "history-1", "session-1"]
    assert len(set(urls)) == 2
    for name, (var, value) in expected.items():
        assert records[name]["env"][var] == value
    assert records["gateway-2"]["env"]["GATEWAY_PORT"] == str(ports["gateway-2"][0])
    assert records["session-1"]["env"]["SESSION_HTTP_PORT"] == str(ports["session-1"][1])
    assert all(r["nats_up"] for r in records.values())
    # NATS runs with authorization: each service gets the seed file of its own identity.
    assert set(seeds) == {"gateway", "session", "history", "operator"}
    for name, record in records.items():
        kind = name.split("-")[0]
        given = {k: v for k, v in record["env"].items() if "NKEY" in k and v}
        assert given == {f"{kind.upper()}_NATS_NKEY_SEED_FILE": str(seeds[kind])}
    assert set(modes.values()) == {0o600, 0o700}, "seeds readable by their owner only"
    assert f"CHATCTL_NATS_NKEY_SEED_FILE={seeds['operator']}" in banner
    last_gateway = max(records[g]["stopped_ns"] for g in ("gateway-1", "gateway-2"))
    assert last_gateway < min(records[s]["stopped_ns"] for s in ("session-1", "history-1"))
    assert not any(p.running for p in stack.processes)
    assert set(timings) == {"nats", "redis", "postgres", "history+session", "gateway"}


async def test_failed_service_stops_everything(tmp_path: Path) -> None:
    """A service that dies during startup fails start() and nothing is left running."""
    extra_env = _fake_services(tmp_path) | {"FAKE_FAIL": "history"}
    stack = Stack(StackConfig(data_dir=tmp_path / "data", gateway_port=0, extra_env=extra_env))
    with pytest.raises(ProcessExitedError) as info:
        await stack.start()
    assert "history refuses to start" in info.value.log_tail
    assert not any(p.running for p in stack.processes)


async def test_busy_gateway_port_is_reported(tmp_path: Path) -> None:
    """The first gateway's port must be free; otherwise start() says so and cleans up."""
    extra_env = _fake_services(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        config = StackConfig(data_dir=tmp_path / "data", gateway_port=busy.getsockname()[1],
                             extra_env=extra_env)  # fmt: skip
        stack = Stack(config)
        with pytest.raises(DevstackError, match="is in use"):
            await stack.start()
    assert not any(p.running for p in stack.processes)


def test_external_servers_are_not_started(tmp_path: Path) -> None:
    """URLs in the config replace our servers."""
    config = StackConfig(data_dir=tmp_path, nats_url="nats://10.0.0.1:4222",
                         redis_url="redis://r:6379/0", postgres_dsn="postgresql://p/chat")  # fmt: skip
    stack = Stack(config)
    assert stack.servers == []
    assert (stack.nats_url, stack.redis_url, stack.postgres_dsn) == (
        "nats://10.0.0.1:4222", "redis://r:6379/0", "postgresql://p/chat",
    )  # fmt: skip
