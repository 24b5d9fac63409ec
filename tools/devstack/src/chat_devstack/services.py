"""The chat services (gateway, session, history) run as ``python -m chat_<kind>`` children.

Each service reads its settings from ``<KIND>_*`` environment variables (see
``chat_common.settings``) and is ready when ``GET /readyz`` on its ops HTTP port answers 200.
Its NATS identity is the one named after its kind: it gets that identity's seed file only.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from .probes import http_get_status
from .process import ManagedProcess

__all__ = ["ServiceKind", "ServiceProcess", "service_env"]

ServiceKind = Literal["gateway", "session", "history"]


def service_env(
    kind: ServiceKind,
    *,
    instance_id: str,
    http_port: int,
    nats_url: str,
    redis_url: str | None = None,
    postgres_dsn: str | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    nats_seed_file: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The variables one service instance needs (without the inherited environment).

    ``port`` is the gateway's public port; ``redis_url`` is for sessions and
    ``postgres_dsn`` for history; ``nats_seed_file`` holds the NKey seed of the service's
    NATS identity (none: the service's credentials come from the inherited environment, or
    it connects without). ``extra_env`` comes last and wins.
    """
    prefix = kind.upper()
    env = {
        "PYTHONUNBUFFERED": "1",
        f"{prefix}_NATS_URL": nats_url,
        f"{prefix}_HTTP_PORT": str(http_port),
        f"{prefix}_INSTANCE_ID": instance_id,
    }
    if nats_seed_file is not None:
        # The file wins over a seed the caller's environment may hold for another NATS.
        env |= {
            f"{prefix}_NATS_NKEY_SEED_FILE": str(nats_seed_file),
            f"{prefix}_NATS_NKEY_SEED": "",
        }
    if kind == "gateway":
        if port is None:
            raise ValueError("a gateway needs its public port")
        env |= {"GATEWAY_HOST": host, "GATEWAY_PORT": str(port)}
    elif kind == "session":
        if redis_url is None:
            raise ValueError("a session service needs redis_url")
        env["SESSION_REDIS_URL"] = redis_url
    else:
        if postgres_dsn is None:
            raise ValueError("a history service needs postgres_dsn")
        env["HISTORY_POSTGRES_DSN"] = postgres_dsn
    return env | dict(extra_env or {})


class ServiceProcess(ManagedProcess):
    """One service instance; ``wait_ready(timeout=...)`` polls ``GET /readyz`` for a 200."""

    def __init__(
        self,
        kind: ServiceKind,
        index: int,
        *,
        env: Mapping[str, str],
        log_path: Path,
        http_port: int,
        port: int | None = None,
        host: str = "127.0.0.1",
        netns: str | None = None,
    ) -> None:
        """``host`` is its address: a test host's (``netns``) for every port, or else the
        gateway's public one (the ops HTTP port then listens on 127.0.0.1)."""
        super().__init__(
            f"{kind}-{index}",
            [sys.executable, "-m", f"chat_{kind}"],
            env=env,
            log_path=log_path,
            ready_check=self.is_ready,
            netns=netns,
        )
        self.kind: ServiceKind = kind
        self.index = index
        self.instance_id = f"{kind}-{index}"
        self.http_port = http_port
        self.port = port
        """The public port (gateways only)."""
        self.host = host
        self.http_host = host if netns is not None else "127.0.0.1"

    @property
    def health_url(self) -> str:
        """``http://127.0.0.1:HTTP_PORT/readyz`` (the test host's address on one)."""
        return f"http://{self.http_host}:{self.http_port}/readyz"

    @property
    def public_url(self) -> str | None:
        """``http://HOST:PORT/`` for a gateway, ``None`` otherwise."""
        return None if self.port is None else f"http://{self.host}:{self.port}/"

    async def is_ready(self) -> bool:
        """Whether ``GET /readyz`` answers 200 right now."""
        return await http_get_status(self.http_host, self.http_port, "/readyz") == 200
