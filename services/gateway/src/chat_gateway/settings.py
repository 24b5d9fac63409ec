"""Gateway settings (env prefix ``GATEWAY_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from chat_common.settings import ServiceSettings

__all__ = ["GatewaySettings"]


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore", frozen=True)

    host: str = Field(default="127.0.0.1", description="bind address of the client port")
    port: int = Field(default=8080, ge=0, le=65535, description="client port (Socket.IO and /ws)")
    reuse_port: bool = Field(
        default=False,
        description="share the client port with the host's other gateway processes"
        " (SO_REUSEPORT: the kernel spreads new connections over them)",
    )
    socketio_path: str = Field(
        default="/socket.io/",
        pattern=r"^/([A-Za-z0-9._~-]+/)+$",
        description="path of the Socket.IO endpoint (the reference server's `path` option)",
    )
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
        default=1_048_576,
        ge=65536,
        description="the hard cap: unsent bytes after which a client is cut (4008), whatever they are",
    )
    send_buffer_bytes: int = Field(
        default=16_384,
        ge=0,
        description="the kernel's send buffer per client connection (SO_SNDBUF): small, so that"
        " a ping never waits behind much for a slow reader; 0: the kernel sizes it (up to 4 MiB)",
    )
    catchup_soft_bytes: int = Field(
        default=16_384,
        ge=4096,
        description="the soft limit: unsent bytes past which a client is sent no live room messages"
        " (caught up from history once below a quarter of it); presence is held past half of it,"
        " typing dropped past a quarter; at most half the hard cap (lowered to it)",
    )
    catchup_deadline_s: float = Field(
        default=30.0,
        gt=0,
        description="seconds a client past its soft limit may take no bytes at all before it is cut (4008)",
    )
    catchup_page: int = Field(
        default=100,
        ge=1,
        le=200,
        description="messages per catch-up page at most (fewer when they would pass the soft limit)",
    )
    catchup_interval_s: float = Field(
        default=1.0,
        gt=0,
        description="least time between two catch-up pages of one client (its cost to history)",
    )
    send_attempts: int = Field(default=3, ge=1, description="tries of one append on UNAVAILABLE")
    send_deadline_s: float = Field(default=10.0, gt=0, description="overall deadline of a send")
    session_heartbeat_s: float = Field(
        default=5.0,
        gt=0,
        description="how often live sessions are heartbeated to the session service",
    )
    bus_loss_shed_s: float = Field(
        default=3.0,
        gt=0,
        description="once NATS has been unreachable this long, every client is closed with"
        " 1012 (they resume on another gateway) and new ones get 503 until it is back",
    )
    max_replay: int = Field(
        default=5000,
        ge=0,
        description="messages replayed per room on resume; more means not recovered",
    )
    connection_state_recovery: bool = Field(
        default=True, description="Socket.IO: send pid and per-event offsets so clients can resume"
    )
    auth_mode: str = Field(
        default="jwt",
        pattern="^(jwt|dev)$",
        description="jwt: every connection needs a valid token; dev: no auth, email taken as given (loud warning)",
    )
    jwt_algorithms: list[str] = Field(
        default=["HS256"], description="allowed algorithms, JSON list; HS* and RS*/ES* never mixed"
    )
    jwt_secret: SecretStr | None = Field(default=None, description="HS* key (at least 32 bytes)")
    jwt_public_key_file: Path | None = Field(
        default=None, description="PEM public key for RS*/ES*/PS* tokens"
    )
    jwt_audience: str | None = Field(default=None, description="required aud, when set")
    jwt_issuer: str | None = Field(default=None, description="required iss, when set")
    jwt_leeway_s: float = Field(default=30.0, ge=0, description="clock skew tolerated on exp/iat")
    room_policy: str = Field(
        default="open",
        pattern="^(open|claim)$",
        description="open: any room; claim: the token's rooms claim (exact or prefix*)",
    )
    allowed_origins: list[str] = Field(
        default=[], description="browser Origins allowed (exact match, JSON list); others get 403"
    )
    allow_no_origin: bool = Field(
        default=True, description="accept clients that send no Origin header (non-browser)"
    )
    rate_per_s: float = Field(
        default=20.0, gt=0, description="client events per second per connection"
    )
    rate_burst: float = Field(default=40.0, ge=1, description="events a connection may burst")
    append_batches_in_flight: int = Field(
        default=1,
        ge=1,
        le=256,
        description="append batch requests a gateway has out at once (more appends wait for the next)",
    )
    pipeline_depth: int = Field(
        default=32,
        ge=1,
        le=1024,
        description="send_message events of one connection handled at once (acks in order)",
    )
    user_lease: int = Field(
        default=10,
        ge=1,
        le=100,
        description="tokens leased at a time from the user's shared bucket (the next lease "
        "is asked for once half is spent)",
    )
    user_lease_ttl_s: float = Field(
        default=10.0,
        gt=0,
        description="seconds a lease's unspent tokens are kept after it was granted",
    )
    max_connections_per_ip: int = Field(
        default=256, ge=1, description="open connections one client address may hold on a gateway"
    )
    connect_timeout_s: float = Field(
        default=10.0, gt=0, description="time to connect the namespace / authenticate"
    )
    join_timeout_s: float = Field(
        default=60.0, gt=0, description="time for a new connection to join a room (or resume)"
    )
    read_rate_per_s: float = Field(
        default=50.0,
        gt=0,
        description="frames per second (events and control frames alike) a connection may make the gateway read; beyond, reading pauses",
    )
    read_burst: float = Field(default=100.0, ge=1, description="frames a connection may burst")
    flood_cut_s: float = Field(
        default=10.0,
        gt=0,
        description="seconds over the read budget in a row after which a connection is closed (1008)",
    )
    close_timeout_s: float = Field(
        default=3.0,
        gt=0,
        description="time a closing client gets to finish the close handshake before its TCP connection is aborted",
    )
    http_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="time for an HTTP request to arrive in full; also the keep-alive idle time",
    )
    gap_fill_delay_ms: float = Field(
        default=25.0, ge=0, description="wait for a late message before fetching a gap from history"
    )
    presence_interval_ms: float = Field(
        default=1000.0,
        gt=0,
        description="a large room's joins and leaves go out as one presence_diff per this interval",
    )
    presence_diff_max: int = Field(
        default=50, ge=1, description="names per list of one presence_diff (past it: truncated)"
    )
    typing_ttl_ms: float = Field(
        default=6000.0,
        gt=0,
        description="a typist not renewed for this long is no longer shown (clients renew every 3 s)",
    )
    typing_interval_ms: float = Field(
        default=1000.0,
        gt=0,
        description="at most one typing frame per room per member per this interval",
    )
    typing_room_frames_per_s: float = Field(
        default=1000.0,
        gt=0,
        description="typing frames per second one room may cost a gateway: a room with more"
        " members here gets them less often than each interval (10,000 members: every 10 s)",
    )
    typing_names_max: int = Field(
        default=5, ge=1, le=20, description="emails in one typing frame (the count covers the rest)"
    )
    typing_rate_per_s: float = Field(
        default=2.0, gt=0, description="typing signals per second a user may make a gateway publish"
    )
    typing_burst: float = Field(default=6.0, ge=1, description="typing signals a user may burst")

    @model_validator(mode="after")
    def _read_budget_covers_events(self) -> GatewaySettings:
        if self.read_rate_per_s < self.rate_per_s or self.read_burst < self.rate_burst:
            raise ValueError(
                "GATEWAY_READ_RATE_PER_S and GATEWAY_READ_BURST must be at least the event "
                "rate and burst (GATEWAY_RATE_PER_S, GATEWAY_RATE_BURST)"
            )
        return self

    @property
    def soft_limit_bytes(self) -> int:
        """The soft limit in force: ``catchup_soft_bytes``, at most half the hard cap."""
        return min(self.catchup_soft_bytes, self.slow_consumer_bytes // 2)
