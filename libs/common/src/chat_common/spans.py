"""Spans that cost little when the sampler says no, and errors and slow work kept anyway.

The shipped sampler records a small share of traces (:data:`DEFAULT_RATIO`, parent-based:
a trace is recorded everywhere or nowhere). On the other paths:

* **no attribute work**: attributes and links may be given as callables, called only for a
  span that records (or is kept);
* **no instrumentation work**: inside an unrecorded span the client-library
  instrumentations (asyncpg, redis) are suppressed (OpenTelemetry's own
  ``suppress_instrumentation`` context key), so a query of a trace that records nothing
  builds no attributes and makes no span;
* **kept when it matters**: an unrecorded span remembers its name, start and parent. If it
  ends with an error status (set by the code, or an exception) or after at least
  ``CHAT_TRACES_KEEP_SLOW_MS``, a span is recorded after the fact with its real start and
  end, ``chat.kept`` = ``error`` or ``slow``, in the same trace (the id the log lines of the
  request carry). Only that span is kept, not the rest of its trace: its parent was never
  recorded, so a trace viewer shows it alone under a missing parent.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from types import TracebackType

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.sdk.trace.sampling import ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from opentelemetry.util.types import AttributeValue

__all__ = [
    "DEFAULT_RATIO",
    "Attributes",
    "Links",
    "default_sampler",
    "keep_slow_ns",
    "start_current",
]

DEFAULT_RATIO = 0.01
"""Share of traces recorded when ``OTEL_TRACES_SAMPLER`` is not set (docs/operations.md)."""
DEFAULT_KEEP_SLOW_MS = 100.0

Attributes = Mapping[str, AttributeValue] | Callable[[], Mapping[str, AttributeValue]] | None
Links = Sequence[Link] | Callable[[], Sequence[Link]] | None
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


def default_sampler() -> Sampler | None:
    """Parent-based ratio sampling at :data:`DEFAULT_RATIO`, unless ``OTEL_TRACES_SAMPLER``
    names another (``None``: the SDK reads the variables)."""
    if os.environ.get("OTEL_TRACES_SAMPLER"):
        return None
    return ParentBased(TraceIdRatioBased(DEFAULT_RATIO))


def keep_slow_ns() -> int:
    """``CHAT_TRACES_KEEP_SLOW_MS`` in ns (0: slow spans are not kept)."""
    raw = os.environ.get("CHAT_TRACES_KEEP_SLOW_MS", "")
    try:
        ms = float(raw) if raw else DEFAULT_KEEP_SLOW_MS
    except ValueError:
        ms = DEFAULT_KEEP_SLOW_MS
    return int(ms * 1e6) if ms > 0 else 0


def _attributes(given: Attributes) -> Mapping[str, AttributeValue]:
    return (given() if callable(given) else given) or {}


def _links(given: Links) -> Sequence[Link]:
    return (given() if callable(given) else given) or ()


class _Watched(NonRecordingSpan):
    """The span of an unsampled trace: records nothing unless it errs or runs slow."""

    def __init__(
        self,
        span: Span,
        scope: _Scope,
        parent: otel_context.Context,
        slow_ns: int,
    ) -> None:
        super().__init__(span.get_span_context())
        self._scope = scope
        self._parent = parent
        self._slow_ns = slow_ns
        self._started = time.time_ns()
        self._error: str | None = None
        self._extra: dict[str, AttributeValue] | None = None
        self._ended = False

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        code = status.status_code if isinstance(status, Status) else status
        if code is StatusCode.ERROR:
            self._error = (status.description if isinstance(status, Status) else None) or (
                description or "error"
            )

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        if self._extra is None:
            self._extra = {}
        self._extra[key] = value

    def end(self, end_time: int | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        ended = end_time or time.time_ns()
        if self._error is not None:
            self._keep("error", ended)
        elif self._slow_ns and ended - self._started >= self._slow_ns:
            self._keep("slow", ended)

    def _keep(self, reason: str, ended: int) -> None:
        own = self.get_span_context()
        parent = trace.get_current_span(self._parent).get_span_context()
        forced = SpanContext(
            own.trace_id,
            parent.span_id if parent.is_valid else own.span_id,
            is_remote=True,
            trace_flags=_SAMPLED,
        )
        scope = self._scope
        attributes = {**_attributes(scope.attributes), **(self._extra or {}), "chat.kept": reason}
        kept = scope.tracer.start_span(
            scope.name,
            context=trace.set_span_in_context(NonRecordingSpan(forced)),
            kind=scope.kind,
            attributes=attributes,
            links=_links(scope.links),
            start_time=self._started,
        )
        if self._error is not None:
            kept.set_status(Status(StatusCode.ERROR, self._error))
        kept.end(end_time=ended)


class _Scope:
    """``with``: start the span (attributes and links only if it records), make it current,
    end it; an exception marks it as an error (its type only: texts may quote user data)."""

    __slots__ = (
        "attributes",
        "context",
        "kind",
        "links",
        "name",
        "record_exception",
        "slow_ns",
        "span",
        "token",
        "tracer",
    )

    def __init__(
        self,
        tracer: trace.Tracer,
        name: str,
        context: otel_context.Context | None,
        kind: SpanKind,
        attributes: Attributes,
        links: Links,
        record_exception: bool,
        slow_ns: int,
    ) -> None:
        self.tracer = tracer
        self.name = name
        self.context = context
        self.kind = kind
        self.attributes = attributes
        self.links = links
        self.record_exception = record_exception
        self.slow_ns = slow_ns

    def __enter__(self) -> Span:
        span = self.tracer.start_span(self.name, context=self.context, kind=self.kind)
        if span.is_recording():
            if self.attributes:
                span.set_attributes(_attributes(self.attributes))
            for link in _links(self.links):
                span.add_link(link.context, link.attributes)
            self.token = otel_context.attach(trace.set_span_in_context(span))
        else:
            if span.get_span_context().is_valid:
                parent = self.context if self.context is not None else otel_context.get_current()
                span = _Watched(span, self, parent, self.slow_ns)
            current = trace.set_span_in_context(span)
            self.token = otel_context.attach(
                otel_context.set_value(_SUPPRESS_INSTRUMENTATION_KEY, True, current)
            )
        self.span = span
        return span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        otel_context.detach(self.token)
        span = self.span
        if isinstance(exc, Exception):
            if self.record_exception and span.is_recording():
                span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        span.end()


def start_current(
    tracer: trace.Tracer,
    name: str,
    *,
    context: otel_context.Context | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Attributes = None,
    links: Links = None,
    record_exception: bool = True,
    slow_ns: int = 0,
) -> AbstractContextManager[Span]:
    """A context manager: the span ``name``, current inside it (see the module's notes)."""
    return _Scope(tracer, name, context, kind, attributes, links, record_exception, slow_ns)
