"""A NATS server with JetStream, persisted in ``data_dir/nats`` and synced on every write,
with authorization on: only the identities of :mod:`chat_common.buspermissions` may
connect, each with its own permissions, as NKey users whose keys are made for this server
object (so each ``make run``, each test fixture gets fresh ones; a restart keeps them)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from chat_common.buscredentials import UserKey, new_user_key, write_seed
from chat_common.buspermissions import IDENTITIES, Identity, authorization_conf

from .binaries import nats_server_path
from .ports import free_port
from .server_base import Server

__all__ = ["ClusterRoutes", "NatsServer"]


@dataclass(frozen=True)
class ClusterRoutes:
    """A cluster member's routes: where it listens for its peers, and where they listen."""

    name: str
    port: int
    peers: tuple[str, ...]
    """Each peer's route address, ``host:port``."""


class NatsServer(Server):
    """``nats-server`` with JetStream (``sync_interval: always``) on ``127.0.0.1:port``.

    ``monitor_port`` enables the HTTP monitoring endpoint (``0`` picks a free port);
    ``None`` (the default) leaves it off.

    ``identities`` are the NATS users (default: every identity of the system); each gets a
    fresh NKey, its seed written to :meth:`seed_file` (mode 0600, directory 0700) at start.
    ``auth=False`` runs without authorization (anyone may do anything), for testing the
    services' no-credentials mode only. ``user_keys`` reuses keys (the members of a cluster
    share them); ``cluster`` makes it a member of a cluster of servers on this host.
    """

    name = "nats"
    dir_name = "nats"
    default_port = 4222
    ROUTE_PORT = 6222
    """The route port of a cluster member on a test host of its own."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int = 0,
        monitor_port: int | None = None,
        host: str = "127.0.0.1",
        start_timeout: float = 60.0,
        auth: bool = True,
        identities: Iterable[Identity] = IDENTITIES,
        cluster: ClusterRoutes | None = None,
        user_keys: Mapping[str, UserKey] | None = None,
    ) -> None:
        super().__init__(data_dir, port=port, host=host, start_timeout=start_timeout)
        self.monitor_port = monitor_port
        self.identities: tuple[Identity, ...] = tuple(identities) if auth else ()
        self._keys: dict[str, UserKey] = {
            i.name: (user_keys or {}).get(i.name) or new_user_key() for i in self.identities
        }
        self.cluster = cluster
        """This server's place in a cluster (its route port and its peers'), if any."""
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
    def auth(self) -> bool:
        """Whether clients must log in as one of :attr:`identities`."""
        return bool(self.identities)

    def seed_file(self, identity: str) -> Path:
        """The file holding ``identity``'s NKey seed (``KeyError`` for an unknown one)."""
        if identity not in self._keys:
            raise KeyError(identity)
        return self.home / "auth" / f"{identity}.nk"

    @property
    def user_keys(self) -> dict[str, UserKey]:
        """Identity name → its NKey (what the other members of a cluster are given)."""
        return dict(self._keys)

    @property
    def seed_files(self) -> dict[str, Path]:
        """Identity name → its seed file; empty without authorization."""
        return {name: self.seed_file(name) for name in self._keys}

    def public_key(self, identity: str) -> str:
        """``identity``'s NKey public key (not a secret)."""
        return self._keys[identity].public

    def rotate(self, identity: str) -> None:
        """Give ``identity`` a new key: its seed file is replaced, then the running server
        reloads its config (SIGHUP) and drops the connections still using the old key. The
        services read their seed file at start: restart them to log in with the new key."""
        if identity not in self._keys:
            raise KeyError(identity)
        self._keys[identity] = new_user_key()
        write_seed(self.seed_file(identity), self._keys[identity])
        self.config_path.write_text(self._config())
        pid = self._require_process().pid
        if pid is not None and self.running:
            os.kill(pid, signal.SIGHUP)

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
        if self.cluster is not None:
            routes = ", ".join(json.dumps(f"nats://{p}") for p in self.cluster.peers)
            lines += [
                "cluster {",
                f"  name: {json.dumps(self.cluster.name)}",
                f"  listen: {json.dumps(f'{self.host}:{self.cluster.port}')}",
                f"  routes: [{routes}]",
                "}",
            ]
        if self.monitor_port is not None:
            lines.append(f"http: {json.dumps(f'{self.host}:{self.monitor_port}')}")
        text = "\n".join(lines) + "\n"
        if self.identities:
            public = {name: key.public for name, key in self._keys.items()}
            text += authorization_conf(public, self.identities)
        return text

    async def _prepare(self) -> None:
        await super()._prepare()
        if self.monitor_port == 0:
            self.monitor_port = 8222 if self.netns is not None else free_port(self.host)
        for name, key in self._keys.items():
            write_seed(self.seed_file(name), key)

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
