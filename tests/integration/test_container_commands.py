"""Every container command, run directly, starts its service (what the image will run)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
import yaml

from chat_devstack.ports import free_port
from tests.conftest import Servers
from tests.support.http import get_json

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.mark.parametrize("service", ["session", "history", "gateway"])
async def test_compose_command_starts_the_service(
    servers: Servers, service: str, tmp_path: Path
) -> None:
    """The compose command with its compose environment (hosts pointed at the test
    servers, and its NATS seed given inline as its compose env_file gives it) becomes ready,
    then exits 0 on SIGTERM."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    spec = compose["services"][service]
    env = {k: str(v) for k, v in spec["environment"].items() if not k.startswith("OTEL_")}
    http_port = free_port()
    replacements = {
        "nats://nats:4222": servers.nats.url,
        "redis://redis:6379/0": servers.redis.url,
        "postgresql://chat:chat@postgres:5432/chat": await servers.create_database(),
    }
    env = {k: replacements.get(v, v) for k, v in env.items()}
    # deploy/secrets/<service>.env (scripts/nats_credentials.py): <SERVICE>_NATS_NKEY_SEED=SU…
    assert spec["env_file"] == f"deploy/secrets/{service}.env"
    env[f"{service.upper()}_NATS_NKEY_SEED"] = servers.nats.seed_file(service).read_text().strip()
    env[f"{service.upper()}_NATS_NKEY_SEED_FILE"] = ""
    env[f"{service.upper()}_HTTP_PORT"] = str(http_port)
    env[f"{service.upper()}_HTTP_HOST"] = "127.0.0.1"
    if service == "gateway":
        env |= {
            "GATEWAY_PORT": str(free_port()),
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_AUTH_MODE": "dev",
        }
    (command,) = spec["command"]
    log = (tmp_path / f"{service}.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        str(BIN / command), env=os.environ | env, stdout=log, stderr=asyncio.subprocess.STDOUT
    )
    try:
        async with asyncio.timeout(30):
            while True:
                assert proc.returncode is None, (tmp_path / f"{service}.log").read_text()[-2000:]
                try:
                    status, _ = await get_json(f"http://127.0.0.1:{http_port}/readyz", timeout=2)
                except OSError:
                    status = 0
                if status == 200:
                    break
                await asyncio.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        log.close()
