"""Error types shared by every service, and the stable codes clients see.

Tree::

    ChatError                 root of every error we raise on purpose
    ├── InvalidArgument       INVALID_ARGUMENT  bad input; do not retry unchanged
    ├── Unavailable           UNAVAILABLE       a dependency is down or slow; retry with backoff
    └── (any code via ChatError(code, message))

Only ``ErrorCode`` values cross process boundaries; the human message is short and safe
(no payloads, no tokens, no exception reprs). Details go to logs.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "RETRYABLE_CODES",
    "ChatError",
    "ErrorCode",
    "InvalidArgument",
    "Unavailable",
]


class ErrorCode(StrEnum):
    """Stable, documented error codes (see docs/protocol.md)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    UNKNOWN_EVENT = "UNKNOWN_EVENT"
    NOT_IN_ROOM = "NOT_IN_ROOM"
    NOT_MEMBER = "NOT_MEMBER"
    IDENTITY_MISMATCH = "IDENTITY_MISMATCH"
    NOT_FOUND = "NOT_FOUND"
    CONFLICT = "CONFLICT"
    RATE_LIMITED = "RATE_LIMITED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL = "INTERNAL"


RETRYABLE_CODES = frozenset({ErrorCode.UNAVAILABLE, ErrorCode.RATE_LIMITED})


class ChatError(Exception):
    """An error with a stable code and a message that is safe to show to a client."""

    def __init__(
        self, code: ErrorCode | str, message: str, *, retry_after_ms: int | None = None
    ) -> None:
        super().__init__(message)
        self.code = ErrorCode(code) if code in ErrorCode.__members__ else ErrorCode.INTERNAL
        self.message = message
        self.retry_after_ms = retry_after_ms

    @property
    def retryable(self) -> bool:
        """Whether sending the same request again later can succeed."""
        return self.code in RETRYABLE_CODES

    def to_dict(self) -> dict[str, str | int]:
        """The ``{code, message[, retryAfterMs]}`` object clients receive."""
        out: dict[str, str | int] = {"code": self.code.value, "message": self.message}
        if self.retry_after_ms is not None:
            out["retryAfterMs"] = self.retry_after_ms
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code.value}, {self.message!r})"


class InvalidArgument(ChatError):
    """The request is malformed or out of range."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.INVALID_ARGUMENT, message)


class Unavailable(ChatError):
    """A dependency (NATS, Redis, Postgres, another service) cannot serve now."""

    def __init__(self, message: str = "service temporarily unavailable") -> None:
        super().__init__(ErrorCode.UNAVAILABLE, message)
