"""History service settings (env prefix ``HISTORY_``)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from chat_common.settings import ServiceSettings

__all__ = ["HistorySettings"]


class HistorySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HISTORY_", extra="ignore", frozen=True)

    postgres_dsn: SecretStr = Field(
        default=SecretStr("postgresql://postgres@127.0.0.1:5432/chat"),
        description="Postgres DSN (a secret: it may hold a password); list every server of"
        " a primary/standby pair with target_session_attrs=read-write to follow a failover",
    )
    postgres_read_dsn: SecretStr | None = Field(
        default=None,
        description="where scroll-back pages and exports may be read (a standby, e.g."
        " target_session_attrs=prefer-standby); unset: the primary",
    )
    pool_min: int = Field(default=2, ge=0, description="connections kept open")
    pool_max: int = Field(default=10, ge=1, description="connections at most")
    pool_acquire_timeout_s: float = Field(
        default=2.0, gt=0, description="wait for a free connection before UNAVAILABLE"
    )
    command_timeout_s: float = Field(default=5.0, gt=0, description="client-side query timeout")
    statement_timeout_ms: int = Field(
        default=5000, ge=0, description="server-side statement_timeout"
    )
    idle_in_transaction_timeout_ms: int = Field(
        default=10000, ge=0, description="server-side idle_in_transaction_session_timeout"
    )
    batch_max: int = Field(
        default=256, ge=1, description="appends written in one transaction at most"
    )
    batch_linger_ms: float = Field(
        default=0.0,
        ge=0,
        description="how long the first append of a batch waits for company (0: batches form while other commits are in flight)",
    )
    batch_writers: int = Field(
        default=4,
        ge=1,
        description="batches committed concurrently (batches build while others commit)",
    )
    batch_attempts: int = Field(
        default=3, ge=1, description="tries of one batch on transient database errors"
    )
    max_page: int = Field(default=200, ge=1, description="largest page a fetch may ask for")
    max_text_length: int = Field(
        default=65536, ge=1, description="safety cap; the gateway enforces the client limit"
    )
    user_events_kept: int = Field(
        default=1000,
        ge=1,
        description="events kept per user stream (older ones are pruned; a gateway behind them re-reads the state)",
    )
    inbox_listing_ttl_s: float = Field(
        default=600.0, gt=0, description="how long an inbox paging cursor stays valid"
    )
