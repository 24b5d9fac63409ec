"""Shared pieces: error codes, timestamps, retries, routing of handshake requests."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from chat_common.errors import ChatError, ErrorCode, InvalidArgument, Unavailable
from chat_common.retry import RetryPolicy, retry_call
from chat_common.timefmt import iso_ms


def test_iso_ms_has_milliseconds_and_z() -> None:
    """Timestamps are ISO 8601 UTC with exactly three fractional digits and Z."""
    assert (
        iso_ms(datetime(2026, 11, 28, 21, 58, 16, 822_999, tzinfo=UTC))
        == "2026-11-28T21:58:16.822Z"
    )


def test_unknown_codes_become_internal() -> None:
    """A code we do not know is never passed through to a client."""
    assert ChatError("WHATEVER", "x").code is ErrorCode.INTERNAL
    assert Unavailable().retryable and not InvalidArgument("x").retryable


async def test_retry_repeats_retryable_errors_until_success() -> None:
    """UNAVAILABLE is retried; the call's result comes back."""
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise Unavailable()
        return "ok"

    assert await retry_call(RetryPolicy(attempts=5, base_s=0.001), flaky) == "ok"
    assert calls == 3


async def test_retry_gives_up_after_the_attempt_cap() -> None:
    """After the last attempt the last error is raised as it was."""
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise Unavailable("still down")

    with pytest.raises(Unavailable):
        await retry_call(RetryPolicy(attempts=3, base_s=0.001), down)
    assert calls == 3


async def test_retry_never_repeats_non_retryable_errors() -> None:
    """INVALID_ARGUMENT fails at once."""
    calls = 0

    async def bad() -> None:
        nonlocal calls
        calls += 1
        raise InvalidArgument("no")

    with pytest.raises(InvalidArgument):
        await retry_call(RetryPolicy(attempts=5, base_s=0.001), bad)
    assert calls == 1
