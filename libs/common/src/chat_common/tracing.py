"""OpenTelemetry tracing: setup from the standard ``OTEL_*`` variables, and NATS propagation.

* :func:`setup_tracing` installs a tracer provider for the service. Spans are exported over
  OTLP/HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) is set. The
  sampler comes from ``OTEL_TRACES_SAMPLER``/``..._ARG``; unset, it is the shipped one:
  parent-based, 1% of traces, with errors and slow spans kept (:mod:`chat_common.spans`).
  Trace ids are made even without an exporter, so logs always carry them. ``OTEL_SDK_DISABLED=true`` turns
  tracing off: :func:`tracer` then hands out one shared non-recording span, no header is
  injected or extracted and no client library is instrumented (:func:`tracing_enabled`),
  so a disabled tracer costs a branch per span, nothing more.
* W3C ``traceparent`` travels in NATS message headers: :func:`inject_headers` on publish
  and request, :func:`extract_context` on receive.
* Span names and attributes follow the messaging semantic conventions
  (``messaging.system=nats``, ``messaging.destination.name``, ``messaging.operation.type``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from contextlib import AbstractContextManager

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind

from chat_common.spans import Attributes, Links, default_sampler, keep_slow_ns, start_current

__all__ = [
    "SpanKind",
    "TraceLogFilter",
    "extract_context",
    "inject_headers",
    "messaging_attributes",
    "sampled",
    "setup_tracing",
    "shutdown_tracing",
    "tracer",
    "tracing_enabled",
]

_log = logging.getLogger("chat.tracing")


def _exporter_configured() -> bool:
    if os.environ.get("OTEL_TRACES_EXPORTER", "otlp").lower() == "none":
        return False
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def _sdk_disabled() -> bool:
    return os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true"


_enabled = not _sdk_disabled()
_slow_ns = keep_slow_ns()


def tracing_enabled() -> bool:
    """Whether spans are recorded (``OTEL_SDK_DISABLED`` is not ``true``)."""
    return _enabled


def setup_tracing(*, service: str, instance: str) -> None:
    """Install the tracer provider (once per process)."""
    global _enabled, _slow_ns
    _enabled = not _sdk_disabled()
    _slow_ns = keep_slow_ns()
    if not _enabled:
        return
    resource = Resource.create(
        {"service.name": os.environ.get("OTEL_SERVICE_NAME", f"chat-{service}"),
         "service.instance.id": instance}
    )  # fmt: skip
    provider = TracerProvider(resource=resource, sampler=default_sampler())
    if _exporter_configured():
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        _log.info("tracing exported over OTLP")
    trace.set_tracer_provider(provider)


def shutdown_tracing() -> None:
    """Flush and stop the exporter (the last shutdown step)."""
    provider = trace.get_tracer_provider()
    shutdown = getattr(provider, "shutdown", None)
    if shutdown is not None:
        shutdown()


class _Disabled:
    """The span context manager of a disabled tracer: shared, reentrant, stateless."""

    __slots__ = ()

    def __enter__(self) -> Span:
        return trace.INVALID_SPAN

    def __exit__(self, *_exc: object) -> None:
        return None


_DISABLED = _Disabled()


class Tracer:
    """A named tracer that costs nothing when tracing is disabled."""

    __slots__ = ("_name", "_otel")

    def __init__(self, name: str) -> None:
        self._name = name
        self._otel: trace.Tracer | None = None

    def start_as_current_span(
        self,
        name: str,
        *,
        context: otel_context.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Links = None,
        record_exception: bool = True,
    ) -> AbstractContextManager[Span]:
        """The span ``name``, current inside the ``with``. ``attributes`` and ``links`` may
        be callables: they are called only when the span records."""
        if not _enabled:
            return _DISABLED
        if self._otel is None:  # first span: the provider is installed by now
            self._otel = trace.get_tracer(self._name)
        return start_current(
            self._otel, name, context=context, kind=kind, attributes=attributes, links=links,
            record_exception=record_exception, slow_ns=_slow_ns,
        )  # fmt: skip


def tracer(name: str) -> Tracer:
    return Tracer(name)


def inject_headers(
    headers: dict[str, str] | None = None, span_context: object = None
) -> dict[str, str]:
    """Add the current (or the given) trace context to NATS headers.

    Pass ``inject_headers(...) or None`` to nats.py: it sends an empty header block (HPUB)
    for ``{}``, but a plain PUB for ``None``.
    """
    carrier = dict(headers or {})
    if not _enabled:
        return carrier
    ctx = span_context if isinstance(span_context, otel_context.Context) else None
    propagate.inject(carrier, context=ctx)
    return carrier


def extract_context(headers: Mapping[str, str] | None) -> otel_context.Context:
    """The trace context carried by NATS headers (empty context when none)."""
    if not _enabled:
        return otel_context.Context()
    return propagate.extract(dict(headers or {}))


def sampled(headers: Mapping[str, str] | None) -> bool:
    """Whether NATS headers carry the context of a trace that records (W3C ``traceparent``
    with the sampled flag): a hot path that would only continue the trace skips the span
    of a trace that records nothing (such a span is never kept as slow either)."""
    if not _enabled or not headers:
        return False
    parent = headers.get("traceparent", "")
    return len(parent) == 55 and parent[-1] in "13579bdf"


def messaging_attributes(subject: str, operation: str) -> dict[str, str]:
    return {
        "messaging.system": "nats",
        "messaging.destination.name": subject,
        "messaging.operation.type": operation,
    }


class TraceLogFilter(logging.Filter):
    """Adds ``trace_id`` and ``span_id`` of the current span to every log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        span: Span = trace.get_current_span()
        ctx = span.get_span_context()
        if ctx.is_valid:
            record.trace_id = format(ctx.trace_id, "032x")
            record.span_id = format(ctx.span_id, "016x")
        return True
