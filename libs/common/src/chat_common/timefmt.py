"""Timestamps on the wire: ISO 8601 UTC with milliseconds and ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["iso_ms", "now_iso_ms"]


def iso_ms(moment: datetime) -> str:
    """Format an aware datetime as ``2026-11-28T21:58:16.822Z``."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def now_iso_ms() -> str:
    """The current time formatted by :func:`iso_ms`."""
    return iso_ms(datetime.now(UTC))
