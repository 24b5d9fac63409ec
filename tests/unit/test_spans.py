"""The shipped sampler's spans (chat_common.spans): no attribute work when unsampled, and
errors and slow spans kept after the fact, in the trace their logs name."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind, StatusCode

from chat_common.spans import DEFAULT_RATIO, default_sampler, keep_slow_ns, start_current
from chat_common.tracing import sampled


def _tracer(root: Sampler) -> tuple[trace.Tracer, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(root))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test"), exporter


def _never() -> dict[str, str]:
    raise AssertionError("attributes built for a span that does not record")


def test_an_unsampled_span_builds_no_attributes_and_exports_nothing() -> None:
    tracer, exported = _tracer(ALWAYS_OFF)
    with start_current(tracer, "quiet", attributes=_never, links=_never) as span:
        assert not span.is_recording()
        assert span.get_span_context().is_valid  # logs still carry a trace id
        assert trace.get_current_span() is span
    assert exported.get_finished_spans() == ()


def test_an_unsampled_span_that_errs_is_kept_in_its_own_trace() -> None:
    tracer, exported = _tracer(ALWAYS_OFF)
    with start_current(
        tracer, "chat send_message", kind=SpanKind.SERVER, attributes=lambda: {"chat.room": "r"}
    ) as span:
        trace_id = span.get_span_context().trace_id
        span.set_attribute("chat.error.code", "UNAVAILABLE")
        span.set_status(StatusCode.ERROR, "UNAVAILABLE")
    (kept,) = exported.get_finished_spans()
    assert kept.name == "chat send_message" and kept.kind is SpanKind.SERVER
    assert kept.context is not None and kept.context.trace_id == trace_id
    assert kept.status.status_code is StatusCode.ERROR
    assert kept.attributes == {
        "chat.room": "r",
        "chat.error.code": "UNAVAILABLE",
        "chat.kept": "error",
    }
    assert kept.start_time is not None and kept.end_time is not None
    assert kept.start_time <= kept.end_time


def test_an_exception_marks_the_span_with_its_type_only_and_propagates() -> None:
    tracer, exported = _tracer(ALWAYS_OFF)
    with pytest.raises(ValueError), start_current(tracer, "boom"):
        raise ValueError("a user's text")
    (kept,) = exported.get_finished_spans()
    assert kept.status.description == "ValueError"
    assert kept.attributes is not None and kept.attributes["chat.kept"] == "error"


def test_a_slow_unsampled_span_is_kept_and_a_fast_one_is_not() -> None:
    tracer, exported = _tracer(ALWAYS_OFF)
    with start_current(tracer, "fast", slow_ns=10**12):
        pass
    with start_current(tracer, "slow", slow_ns=1):  # every span lasts at least 1 ns
        pass
    (kept,) = exported.get_finished_spans()
    assert kept.name == "slow"
    assert kept.attributes is not None and kept.attributes["chat.kept"] == "slow"
    assert kept.status.status_code is StatusCode.UNSET


def test_a_kept_child_names_its_unrecorded_parent() -> None:
    tracer, exported = _tracer(ALWAYS_OFF)
    with start_current(tracer, "parent") as parent, start_current(tracer, "child") as child:
        child.set_status(StatusCode.ERROR)
    (kept,) = exported.get_finished_spans()
    assert kept.parent is not None
    assert kept.parent.span_id == parent.get_span_context().span_id
    assert kept.context is not None
    assert kept.context.trace_id == parent.get_span_context().trace_id


def test_a_sampled_span_records_its_attributes_and_links_in_the_parents_trace() -> None:
    tracer, exported = _tracer(ALWAYS_ON)
    with start_current(tracer, "other") as other:
        pass
    other_link = Link(other.get_span_context())
    with (
        start_current(tracer, "parent") as parent,
        start_current(tracer, "child", attributes=lambda: {"a": 1}, links=lambda: [other_link]),
    ):
        pass
    child = next(s for s in exported.get_finished_spans() if s.name == "child")
    assert child.attributes == {"a": 1}
    assert [link.context for link in child.links] == [other.get_span_context()]
    assert child.parent is not None
    assert child.parent.span_id == parent.get_span_context().span_id


def test_the_shipped_sampler_is_parent_based_ratio_unless_the_variables_name_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
    sampler = default_sampler()
    assert isinstance(sampler, ParentBased)
    assert f"TraceIdRatioBased{{{DEFAULT_RATIO}}}" in sampler.get_description()
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    assert default_sampler() is None  # the SDK reads the variables


def test_the_slow_threshold_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAT_TRACES_KEEP_SLOW_MS", "250")
    assert keep_slow_ns() == 250_000_000
    monkeypatch.setenv("CHAT_TRACES_KEEP_SLOW_MS", "0")
    assert keep_slow_ns() == 0
    monkeypatch.delenv("CHAT_TRACES_KEEP_SLOW_MS")
    assert keep_slow_ns() == 100_000_000


def test_the_shipped_ratio_records_about_that_share_of_root_traces() -> None:
    tracer, exported = _tracer(TraceIdRatioBased(DEFAULT_RATIO))
    for _ in range(20_000):
        with start_current(tracer, "root"):
            pass
    recorded = len(exported.get_finished_spans())
    assert 0.5 * DEFAULT_RATIO * 20_000 < recorded < 1.5 * DEFAULT_RATIO * 20_000


def test_sampled_reads_the_w3c_sampled_flag() -> None:
    trace_id, span_id = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    assert sampled({"traceparent": f"00-{trace_id}-{span_id}-01"})
    assert not sampled({"traceparent": f"00-{trace_id}-{span_id}-00"})
    assert not sampled({"traceparent": "garbage"})
    assert not sampled({}) and not sampled(None)


def test_client_library_instrumentation_is_suppressed_only_where_nothing_records() -> None:
    """asyncpg's and redis' instrumentations check this before building their spans."""
    from opentelemetry.instrumentation.utils import is_instrumentation_enabled

    quiet, _ = _tracer(ALWAYS_OFF)
    with start_current(quiet, "unrecorded"):
        assert not is_instrumentation_enabled()
    assert is_instrumentation_enabled()
    recording, _ = _tracer(ALWAYS_ON)
    with start_current(recording, "recorded"):
        assert is_instrumentation_enabled()
