"""Retries for idempotent calls: exponential backoff with full jitter, attempt cap, deadline.

Built on tenacity (``wait_random_exponential`` is the "full jitter" of the AWS architecture
note: each wait is uniform in ``[0, min(cap, base * 2**n)]``). Only errors classified as
retryable are retried: ``ChatError`` with a retryable code (``UNAVAILABLE``...).
"""

from __future__ import annotations

import asyncio
import random
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

    The last error is re-raised as it was. The first attempt runs without tenacity's
    machinery, which costs more than a NATS round trip; only a retryable failure enters it.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        return await call()
    except Exception as exc:
        if policy.attempts <= 1 or not is_retryable(exc):
            raise
        # What tenacity would have waited after the first attempt; it goes on from there.
        await asyncio.sleep(random.uniform(0, min(policy.cap_s, policy.base_s)))
        if loop.time() - started >= policy.deadline_s:
            raise
    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.attempts - 1)
        | stop_after_delay(max(0.0, policy.deadline_s - (loop.time() - started))),
        wait=wait_random_exponential(multiplier=policy.base_s * 2, max=policy.cap_s),
        retry=retry_if_exception(is_retryable),
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await call()
    raise AssertionError("unreachable: tenacity re-raises the last error")
