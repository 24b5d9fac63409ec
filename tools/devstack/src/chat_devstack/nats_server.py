"""A NATS server with JetStream, persisted in ``data_dir/nats`` and synced on every write."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

from .binaries import nats_server_path
from .ports import free_port
from .server_base import Server

__all__ = ["NatsServer"]


class NatsServer(Server):
    """``nats-server`` with JetStream (``sync_interval: always``) on ``127.0.0.1:port``.

    ``monitor_port`` enables the HTTP monitoring endpoint (``0`` picks a free port);
    ``None`` (the default) leaves it off.
    """

    name = "nats"
    dir_name = "nats"

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int = 0,
        monitor_port: int | None = None,
        host: str = "127.0.0.1",
        start_timeout: float = 60.0,
    ) -> None:
        super().__init__(data_dir, port=port, host=host, start_timeout=start_timeout)
        self.monitor_port = monitor_port
        digest = hashlib.sha256(str(self.home).encode()).hexdigest()[:12]
        self.server_name = f"devstack-{digest}"
        """Stable for a data dir; the readiness probe checks it to be sure it reached us."""

    @property
    def url(self) -> str:
        """``nats://127.0.0.1:PORT``."""
        return f"nats://{self.host}:{self.port}"

    @property
    def monitor_url(self) -> str | None:
        """``http://127.0.0.1:MPORT`` when monitoring is on (``/healthz``, ``/jsz``...)."""
        return None if self.monitor_port is None else f"http://{self.host}:{self.monitor_port}"

    @property
    def config_path(self) -> Path:
        """The generated config file (rewritten at each start)."""
        return self.home / "nats-server.conf"

    def _config(self) -> str:
        lines = [
            f"server_name: {json.dumps(self.server_name)}",
            f"listen: {json.dumps(f'{self.host}:{self.port}')}",
            # A client whose link died without a FIN is dropped after two missed pings
            # (~4-6 s) instead of the default 2 x 2 min: until then the server keeps
            # routing a share of queue-group requests to its dead subscriptions.
            'ping_interval: "2s"',
            "ping_max: 2",
            "jetstream {",
            f"  store_dir: {json.dumps(str(self.home))}",
            "  sync_interval: always",
            "}",
        ]
        if self.monitor_port is not None:
            lines.append(f"http: {json.dumps(f'{self.host}:{self.monitor_port}')}")
        return "\n".join(lines) + "\n"

    async def _prepare(self) -> None:
        await super()._prepare()
        if self.monitor_port == 0:
            self.monitor_port = free_port(self.host)

    def _argv(self) -> list[str]:
        self.config_path.write_text(self._config())
        return [str(nats_server_path()), "-c", str(self.config_path)]

    async def _ready(self) -> bool:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            line = await reader.readline()
        finally:
            writer.close()
            await writer.wait_closed()
        if not line.startswith(b"INFO "):
            return False
        info = json.loads(line[5:])
        return bool(info.get("server_name") == self.server_name and info.get("jetstream"))
