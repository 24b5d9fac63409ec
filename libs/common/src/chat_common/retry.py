"""Retries for idempotent calls: exponential backoff with full jitter, attempt cap, deadline.

Built on tenacity (``wait_random_exponential`` is the "full jitter" of the AWS architecture
note: each wait is uniform in ``[0, min(cap, base * 2**n)]``). Only errors classified as
retryable are retried: ``ChatError`` with a retryable code (``UNAVAILABLE``...).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from chat_common.errors import ChatError

__all__ = ["RetryPolicy", "is_retryable", "retry_call"]

_T = TypeVar("_T")


def is_retryable(exc: BaseException) -> bool:
    """Whether repeating the same idempotent call may succeed."""
    return isinstance(exc, ChatError) and exc.retryable


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 3
    deadline_s: float = 10.0
    base_s: float = 0.05
    cap_s: float = 1.0


async def retry_call(policy: RetryPolicy, call: Callable[[], Awaitable[_T]]) -> _T:
    """Run ``call`` until it succeeds, fails with a non-retryable error, or the policy ends.

    The last error is re-raised as it was.
    """
    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.attempts) | stop_after_delay(policy.deadline_s),
        wait=wait_random_exponential(multiplier=policy.base_s, max=policy.cap_s),
        retry=retry_if_exception(is_retryable),
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await call()
    raise AssertionError("unreachable: tenacity re-raises the last error")
