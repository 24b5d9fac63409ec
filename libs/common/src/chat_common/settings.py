"""Typed settings: one object per service, read from the environment once in ``main``.

Every service extends :class:`ServiceSettings` with its own ``env_prefix`` (``GATEWAY_``,
``SESSION_``, ``HISTORY_``). Tests build settings with keyword arguments.

NATS credentials: each service has its own NATS identity (``chat_common.buspermissions``),
given as an NKey seed file (``*_NATS_NKEY_SEED_FILE``) or the seed itself
(``*_NATS_NKEY_SEED``); with neither, the service connects without authentication, which
only a NATS server without authorization accepts (``chat_common.natsio.nats_credentials``).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ServiceSettings", "default_instance_id"]


def default_instance_id() -> str:
    """A readable id for this process: ``<host>-<pid>``."""
    return f"{socket.gethostname()}-{os.getpid()}"


class ServiceSettings(BaseSettings):
    """What every service needs: NATS, its ops HTTP port, logging and shutdown timing."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    nats_url: str = Field(
        default="nats://127.0.0.1:4222", description="NATS server URL(s), comma-separated"
    )
    nats_nkey_seed_file: Path | None = Field(
        default=None,
        description="file holding this service's NATS NKey seed (SU…), read at start",
    )
    nats_nkey_seed: SecretStr | None = Field(
        default=None,
        description="this service's NATS NKey seed itself (a secret); instead of the file. Neither set: connect without authentication",
    )
    nats_connect_timeout_s: float = Field(
        default=2.0, gt=0, description="timeout of one connection attempt to NATS"
    )
    nats_ping_interval_s: float = Field(
        default=2.0,
        gt=0,
        description="how often the client pings NATS; two unanswered pings mean a dead link",
    )
    nats_reconnect_wait_s: float = Field(
        default=0.5, gt=0, description="pause between reconnect attempts (attempts are unlimited)"
    )
    request_timeout_s: float = Field(
        default=5.0, gt=0, description="deadline of one NATS request to another service"
    )
    http_host: str = Field(default="127.0.0.1", description="bind address of the ops HTTP port")
    http_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="ops HTTP port (/livez, /readyz); 0 picks a free port",
    )
    instance_id: str = Field(
        default_factory=default_instance_id,
        description="name of this instance in logs and discovery",
    )
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR")
    log_format: str = Field(
        default="json", pattern="^(json|text)$", description="json lines, or text for humans"
    )
    max_inflight: int = Field(
        default=1024, gt=0, description="NATS requests handled concurrently per endpoint"
    )
    shutdown_grace_s: float = Field(
        default=10.0, gt=0, description="how long in-flight work may take after SIGTERM"
    )

    @field_validator("nats_nkey_seed_file", "nats_nkey_seed", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value
