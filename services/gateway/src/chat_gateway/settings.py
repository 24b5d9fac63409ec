"""Gateway settings (env prefix ``GATEWAY_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from chat_common.settings import ServiceSettings

__all__ = ["GatewaySettings"]


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore", frozen=True)

    host: str = Field(default="127.0.0.1", description="bind address of the client port")
    port: int = Field(default=8080, ge=0, le=65535, description="client port (Socket.IO and /ws)")
    ping_interval_ms: int = Field(default=25000, gt=0, description="Engine.IO pingInterval")
    ping_timeout_ms: int = Field(default=20000, gt=0, description="Engine.IO pingTimeout")
    max_payload: int = Field(
        default=65536, ge=1024, description="largest frame accepted (bytes); Engine.IO maxPayload"
    )
    max_text_length: int = Field(default=4000, ge=1, description="longest message text")
    join_history_limit: int = Field(default=50, ge=0, le=200, description="messages in a join ack")
    max_rooms_per_connection: int = Field(
        default=100, ge=1, description="rooms one connection may join"
    )
    slow_consumer_bytes: int = Field(
        default=1_048_576, ge=65536, description="unsent bytes after which a client is cut"
    )
    send_attempts: int = Field(default=3, ge=1, description="tries of one append on UNAVAILABLE")
    send_deadline_s: float = Field(default=10.0, gt=0, description="overall deadline of a send")
    session_heartbeat_s: float = Field(
        default=5.0,
        gt=0,
        description="how often live sessions are heartbeated to the session service",
    )
    max_replay: int = Field(
        default=5000,
        ge=0,
        description="messages replayed per room on resume; more means not recovered",
    )
    connection_state_recovery: bool = Field(
        default=True, description="Socket.IO: send pid and per-event offsets so clients can resume"
    )
    gap_fill_delay_ms: float = Field(
        default=25.0, ge=0, description="wait for a late message before fetching a gap from history"
    )
