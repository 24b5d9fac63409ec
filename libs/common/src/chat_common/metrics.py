"""Prometheus metrics every service has, and the ``/metrics`` route of the ops port.

Each service adds its own metrics in its ``metrics`` module; all of them live in the
default registry and are served together. Label values are bounded sets (endpoint names,
event names, error codes), never ids or user input.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

__all__ = [
    "ERRORS",
    "LATENCY_BUCKETS",
    "NATS_CONNECTED",
    "NATS_REQUEST_SECONDS",
    "READY",
    "metrics_handler",
    "track_state",
]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

NATS_REQUEST_SECONDS = Histogram(
    "chat_nats_request_seconds",
    "NATS request/reply latency as the caller sees it, by endpoint subject",
    ["subject", "result"],
    buckets=LATENCY_BUCKETS,
)
ERRORS = Counter(
    "chat_errors_total", "Errors answered to a caller, by stable code", ["code", "where"]
)
READY = Gauge("chat_ready", "1 when the service reports ready")
NATS_CONNECTED = Gauge("chat_nats_connected", "1 while the NATS connection is up")


def track_state(*, ready: Callable[[], bool], nats_connected: Callable[[], bool]) -> None:
    """Gauges read at scrape time."""
    READY.set_function(lambda: float(ready()))
    NATS_CONNECTED.set_function(lambda: float(nats_connected()))


async def metrics_handler(_request: web.Request) -> web.Response:
    """``GET /metrics`` in the Prometheus text format."""
    response = web.Response(body=generate_latest())
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    response.charset = "utf-8"
    return response
