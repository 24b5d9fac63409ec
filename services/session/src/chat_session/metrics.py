"""The session service's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

__all__ = [
    "DRIFT_REPAIRED",
    "LATE_REFUSED",
    "PRESENCE",
    "REAPED",
    "RESTORED",
    "RESUMES",
    "SESSIONS",
]

SESSIONS = Gauge("chat_session_sessions", "Sessions in the store (attached and detached)")
PRESENCE = Counter("chat_session_presence_total", "Presence changes announced", ["event"])
RESUMES = Counter("chat_session_resumes_total", "Resume requests, by outcome", ["outcome"])
REAPED = Counter("chat_session_reaped_total", "Expired sessions ended by the reaper")
RESTORED = Counter(
    "chat_session_restored_total", "Sessions re-registered after the store lost them"
)
DRIFT_REPAIRED = Counter(
    "chat_session_drift_repaired_total",
    "Room memberships moved to their session's side after the two disagreed (a lost write)",
    ["action"],
)
LATE_REFUSED = Counter(
    "chat_session_late_refused_total",
    "Opens, joins and leaves refused because the session had ended or moved, or a later"
    " join or leave of the same connection and room came first (a late request)",
    ["request"],
)
