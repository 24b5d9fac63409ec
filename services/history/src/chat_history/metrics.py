"""The history service's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from chat_common.metrics import LATENCY_BUCKETS

__all__ = [
    "APPENDS",
    "BATCH_SIZE",
    "COMMIT_SECONDS",
    "POOL",
    "POOL_ACQUIRE_TIMEOUTS",
    "USER_EVENTS",
]

BATCH_SIZE = Histogram(
    "chat_history_batch_size",
    "Appends written per group-commit transaction",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
COMMIT_SECONDS = Histogram(
    "chat_history_commit_seconds",
    "Duration of one group-commit transaction",
    buckets=LATENCY_BUCKETS,
)
APPENDS = Counter(
    "chat_history_appends_total", "Appends answered, by result", ["result"]
)  # stored | duplicate | refused (a change judged not to apply) | failed
POOL = Gauge("chat_history_pool", "Postgres pool: size, idle, in_use, waiting, min, max", ["state"])
POOL_ACQUIRE_TIMEOUTS = Counter(
    "chat_history_pool_acquire_timeouts_total", "Callers that got no connection in time"
)
USER_EVENTS = Counter(
    "chat_history_user_events_total", "User events after COMMIT, by publish result", ["result"]
)  # published | failed
