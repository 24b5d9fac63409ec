"""Session service settings (env prefix ``SESSION_``)."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from chat_common.settings import ServiceSettings
from chat_session.redisclient import parse_url

__all__ = ["SessionSettings"]


class SessionSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SESSION_", extra="ignore", frozen=True)

    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="one server (redis://host:port/db), Sentinel"
        " (redis+sentinel://host:port,.../primary-name[/db]) or a Redis Cluster"
        " (redis+cluster://host:port,...)",
    )
    redis_timeout_s: float = Field(
        default=2.0, gt=0, description="socket timeout of one Redis call"
    )
    redis_max_connections: int = Field(
        default=64,
        ge=1,
        description="Redis connections at most (per node on a cluster); callers wait for a"
        " free one",
    )
    key_prefix: str = Field(default="chat", description="prefix of every Redis key we own")
    resume_window_s: float = Field(
        default=120.0, gt=0, description="how long a dropped session stays resumable"
    )
    heartbeat_ttl_s: float = Field(
        default=30.0,
        gt=0,
        description="a session whose gateway stops heartbeating counts as dropped after this",
    )
    user_rate_per_s: float = Field(
        default=30.0, gt=0, description="client events per second per user, across all gateways"
    )
    user_rate_burst: float = Field(default=60.0, ge=1, description="events a user may burst")
    max_sessions_per_user: int = Field(
        default=20, ge=1, description="live sessions (connections) one user may hold"
    )
    presence_list_max: int = Field(
        default=100,
        ge=1,
        le=1000,
        description="rooms of up to this many users carry their member list in user_joined,"
        " user_left and the join ack; larger rooms carry the change and the count, and are"
        " paged with get_members (pages of at most this many)",
    )
    reap_interval_s: float = Field(
        default=1.0, gt=0, description="how often expired sessions are reaped (user_left sent)"
    )
    presence_repair_s: float = Field(
        default=15.0,
        gt=0,
        description="how often room presence is checked against the sessions (a membership"
        " that drifted, after a lost Redis write, is repaired on the second sweep that sees it)",
    )

    @field_validator("redis_url")
    @classmethod
    def _known_redis(cls, url: str) -> str:
        parse_url(url)  # ValueError: the service refuses to start, saying why
        return url
