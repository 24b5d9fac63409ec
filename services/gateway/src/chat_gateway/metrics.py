"""The gateway's Prometheus metrics (served with the common ones on ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from chat_common.metrics import LATENCY_BUCKETS

__all__ = [
    "ACK_SECONDS",
    "BUS_LOSS_SHEDS",
    "CATCHUP_PAGES",
    "CLOSE_ABORTS",
    "CONNECTIONS",
    "DELIVERIES",
    "E2E_SECONDS",
    "EVENTS",
    "FLOOD_CUTS",
    "FRAMES_SHED",
    "INBOX_ROOMS",
    "LAGGING",
    "RATE_LIMITED",
    "READ_MARK_WRITES",
    "READ_PAUSES",
    "RELAYED_POLLS",
    "RESUMES",
    "ROOMS",
    "SESSIONS",
    "SLOW_CONSUMER_CUTS",
    "TYPING_EVENTS",
    "TYPING_FRAMES",
    "TYPING_HEARD",
    "USER_STREAMS",
]

CONNECTIONS = Gauge("chat_gateway_connections", "Open client connections", ["protocol"])
EVENTS = Counter(
    "chat_gateway_events_total",
    "Client events handled, by event and result code",
    ["event", "code"],
)
ACK_SECONDS = Histogram(
    "chat_gateway_ack_seconds",
    "From receiving a client event to sending its ack",
    ["event"],
    buckets=LATENCY_BUCKETS,
)
E2E_SECONDS = Histogram(
    "chat_gateway_e2e_seconds",
    "From the sender's gateway receiving send_message to this gateway writing the fan-out",
    buckets=LATENCY_BUCKETS,
)
DELIVERIES = Counter("chat_gateway_deliveries_total", "Room events written to clients", ["event"])
BUS_LOSS_SHEDS = Counter(
    "chat_gateway_bus_loss_sheds_total",
    "Times this gateway lost NATS for GATEWAY_BUS_LOSS_SHED_S and closed every client (1012)",
)
SLOW_CONSUMER_CUTS = Counter(
    "chat_gateway_slow_consumer_cuts_total",
    "Clients closed with 4008: past the hard cap, or behind without draining for the deadline",
)
LAGGING = Gauge(
    "chat_gateway_lagging_connections",
    "Connections past their soft limit: room events withheld (caught up from history) or presence held",
)
CATCHUP_PAGES = Counter(
    "chat_gateway_catchup_pages_total", "History pages read to catch lagging connections up"
)
FRAMES_SHED = Counter(
    "chat_gateway_frames_shed_total",
    "Room frames not written to a connection past its soft limit: withheld (replayed from"
    " history), coalesced (presence, latest per room) or dropped (typing)",
    ["action"],
)
RATE_LIMITED = Counter("chat_gateway_rate_limited_total", "Client events refused with RATE_LIMITED")
RESUMES = Counter("chat_gateway_resumes_total", "Session resume attempts", ["outcome"])
ROOMS = Gauge("chat_gateway_rooms", "Rooms this gateway has members in")
USER_STREAMS = Gauge(
    "chat_gateway_user_streams", "Users this gateway holds connections of (one subscription each)"
)
INBOX_ROOMS = Gauge(
    "chat_gateway_inbox_rooms", "Rooms this gateway listens to for its inbox followers"
)
READ_MARK_WRITES = Counter(
    "chat_gateway_read_mark_writes_total",
    "Writes of read marks to history (marks coalesced per user and room)",
)
SESSIONS = Gauge("chat_gateway_sessions", "Sessions held by this gateway")
FLOOD_CUTS = Counter(
    "chat_gateway_flood_cuts_total",
    "Clients closed with 1008 for staying over their read budget (GATEWAY_FLOOD_CUT_S)",
)
READ_PAUSES = Counter(
    "chat_gateway_read_pauses_total",
    "Times a connection was not read for exceeding its read budget",
)
CLOSE_ABORTS = Counter(
    "chat_gateway_close_aborts_total",
    "Connections aborted because the peer did not finish closing in time (vanished peers)",
)
RELAYED_POLLS = Counter(
    "chat_gateway_relayed_polls_total",
    "Long-polling requests relayed to the gateway holding their session, by outcome",
    ["outcome"],
)
TYPING_EVENTS = Counter(
    "chat_gateway_typing_events_total",
    "Clients' typing signals at their gateway: published on the bus, refused past the"
    " user's bound (limited), or lost on the way to the bus",
    ["outcome"],
)
TYPING_HEARD = Counter(
    "chat_gateway_typing_heard_total",
    "Typing signals heard on rooms' typing subjects, by kind (start, stop, malformed)",
    ["outcome"],
)
TYPING_FRAMES = Counter(
    "chat_gateway_typing_frames_total",
    "typing frames written to clients (at most one per room per member per interval)",
)
