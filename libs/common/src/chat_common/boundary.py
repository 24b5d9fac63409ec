"""The error boundary every handler runs behind: client events and NATS endpoints alike.

Whatever the handler does, the caller gets a value or a :class:`ChatError` with a stable
code, never an exception's text: a ``ChatError`` passes through, anything else is logged
(with the trace id of the current span) and becomes ``INTERNAL``. The current span records
the code; ``INTERNAL`` marks it as an error.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from opentelemetry import trace
from opentelemetry.trace import StatusCode

from chat_common.errors import ChatError, ErrorCode
from chat_common.metrics import ERRORS

__all__ = ["guarded"]

_T = TypeVar("_T")
_log = logging.getLogger("chat.boundary")


async def guarded(
    run: Callable[[], Awaitable[_T]], *, what: str, log_extra: dict[str, Any] | None = None
) -> _T | ChatError:
    """Run ``run()``; return its result, or the error the caller should answer with."""
    span = trace.get_current_span()
    try:
        return await run()
    except ChatError as exc:
        ERRORS.labels(exc.code.value, what).inc()
        span.set_attribute("chat.error.code", exc.code.value)
        if exc.code is ErrorCode.INTERNAL:
            span.set_status(StatusCode.ERROR, exc.code.value)
            _log.error(f"{what} failed", extra={**(log_extra or {}), "code": exc.code.value})
        return exc
    except Exception as exc:
        ERRORS.labels(ErrorCode.INTERNAL.value, what).inc()
        span.record_exception(exc)
        span.set_status(StatusCode.ERROR, ErrorCode.INTERNAL.value)
        span.set_attribute("chat.error.code", ErrorCode.INTERNAL.value)
        _log.exception(f"{what} crashed", extra={**(log_extra or {}), "code": "INTERNAL"})
        return ChatError(ErrorCode.INTERNAL, "internal error")
