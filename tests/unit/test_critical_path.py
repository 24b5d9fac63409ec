"""bench/trace_hops.py: OTLP exports of hand-built ``send_message`` traces to hop durations."""

from __future__ import annotations

import itertools
import math

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

from bench.trace_hops import HOPS, Span, analyze, decode, hops_of, summarize

T0 = 1_700_000_000_000_000_000
"""Every fake trace starts here (ns since the epoch)."""
_ids = itertools.count(1)
_PG: dict[str, str | float] = {"db.system": "postgresql"}


def _value(v: str | float) -> AnyValue:
    return AnyValue(string_value=v) if isinstance(v, str) else AnyValue(double_value=v)


class _Trace:
    """A fake trace being built: spans by service, times in ms after :data:`T0`."""

    def __init__(self, number: int) -> None:
        self.trace_id = number.to_bytes(16, "big")
        self.spans: dict[str, list[PbSpan]] = {}
        self.publish: PbSpan | None = None

    def span(
        self,
        service: str,
        name: str,
        start_ms: float,
        end_ms: float,
        parent: PbSpan | None = None,
        attributes: dict[str, str | float] | None = None,
    ) -> PbSpan:
        span = PbSpan(
            trace_id=self.trace_id,
            span_id=next(_ids).to_bytes(8, "big"),
            parent_span_id=parent.span_id if parent is not None else b"",
            name=name,
            start_time_unix_nano=T0 + round(start_ms * 1e6),
            end_time_unix_nano=T0 + round(end_ms * 1e6),
            attributes=[KeyValue(key=k, value=_value(v)) for k, v in (attributes or {}).items()],
        )
        self.spans.setdefault(service, []).append(span)
        return span


def _export(*traces: _Trace) -> list[bytes]:
    """One export per service (``chat-gateway-2``: a second gateway, same service name)."""
    services = sorted({service for t in traces for service in t.spans})
    exports = []
    for service in services:
        resource = Resource(
            attributes=[KeyValue(key="service.name", value=_value(service.split("-2")[0]))]
        )
        spans = [s for t in traces for s in t.spans.get(service, [])]
        request = ExportTraceServiceRequest(
            resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(spans=spans)])]
        )
        exports.append(request.SerializeToString())
    return exports


def _message(number: int, k: float = 1.0, *, complete: bool = True) -> _Trace:
    """A message's trace with its times scaled by ``k``: a publish of another room of the
    same batch beside its own, a Postgres span nested one level below the commit.
    ``complete=False``: nothing after the gateway's NATS request."""
    t = _Trace(number)
    attributes: dict[str, str | float] = {"chat.room": "r1", "chat.admission_ms": 0.25 * k}
    root = t.span("chat-gateway", "chat send_message", 0, 9 * k, None, attributes)
    batch = t.span("chat-gateway", "history.append_batch", 0.5 * k, 7.5 * k, root)
    send = t.span("chat-gateway", "send chat.history.append_batch", 1.5 * k, 7.4 * k, batch)
    if not complete:
        return t
    process = t.span("chat-history", "process chat.history.append_batch", 2 * k, 7 * k, send)
    commit = t.span("chat-history", "history.commit", 3 * k, 6 * k, process)
    t.span("chat-history", "INSERT", 3.5 * k, 4 * k, commit, _PG)
    pool = t.span("chat-history", "pool", 4.4 * k, 5.6 * k, commit)
    t.span("chat-history", "SELECT", 4.5 * k, 5.5 * k, pool, _PG)
    other = t.span("chat-history", "send chat.room.r2.events", 6.1 * k, 6.15 * k, process)
    t.span("chat-gateway", "deliver r2", 6.3 * k, 6.4 * k, other)
    t.publish = t.span("chat-history", "send chat.room.r1.events", 6.2 * k, 6.5 * k, process)
    t.span("chat-gateway", "deliver r1", 7 * k, 8 * k, t.publish)
    return t


A_HOPS = {
    "admission": 0.25,
    "handler_to_batch": 0.5,
    "batching_wait": 1.0,
    "bus_to_history": 0.5,
    "history_queue": 1.0,
    "commit": 3.0,
    "commit_postgres": 1.5,
    "publish": 0.5,
    "bus_to_gateway": 0.5,
    "fanout_write": 1.0,
    "receive_to_last_write": 8.0,
    "reply_to_ack": 3.0,
    "receive_to_ack": 9.0,
}
"""The hops of ``_message(n)``, by hand."""


def _exports() -> list[bytes]:
    """Four sends: 1 complete, 2 complete at twice the times with a second gateway's
    deliver ending last, 3 incomplete, 4 complete but with a span kept after the fact."""
    a = _message(1)
    b = _message(2, k=2)
    assert b.publish is not None
    b.span("chat-gateway-2", "deliver r1", 15, 20, b.publish)
    c = _message(3, complete=False)
    d = _message(4)
    commit = next(s for s in d.spans["chat-history"] if s.name == "history.commit")
    commit.attributes.append(KeyValue(key="chat.kept", value=_value("slow")))
    return _export(a, b, c, d)


def _hops_by_trace() -> dict[int, dict[str, float] | None]:
    by_number: dict[int, list[Span]] = {}
    for s in decode(_exports()):
        by_number.setdefault(int(s.trace_id, 16), []).append(s)
    return {n: hops_of(trace) for n, trace in by_number.items()}


def test_the_hops_of_a_complete_trace_tile_the_path() -> None:
    """Each hop is the gap between the spans it names (the publish of the message's own
    room, the Postgres spans at any depth under the commit), and the hops add up to both
    totals."""
    hops = _hops_by_trace()[1]
    assert hops is not None
    assert hops == pytest.approx(A_HOPS)
    path = ("handler_to_batch", "batching_wait", "bus_to_history", "history_queue", "commit")
    fanout = ("publish", "bus_to_gateway", "fanout_write")
    assert sum(hops[k] for k in path + fanout) == pytest.approx(hops["receive_to_last_write"])
    assert sum(hops[k] for k in (*path, "reply_to_ack")) == pytest.approx(hops["receive_to_ack"])


def test_with_two_gateways_the_first_deliver_gives_the_hops_and_the_last_the_total() -> None:
    """A second gateway's later deliver moves only the server-side total."""
    hops = _hops_by_trace()[2]
    assert hops is not None
    doubled = {k: 2 * v for k, v in A_HOPS.items()}
    assert hops == pytest.approx(doubled | {"receive_to_last_write": 20.0})


def test_an_incomplete_trace_and_one_with_a_kept_span_are_skipped() -> None:
    """A trace without its history spans, and one holding a span kept after the fact, give
    no hops; the analysis counts all four sends and the two complete traces."""
    by_trace = _hops_by_trace()
    assert by_trace[3] is None and by_trace[4] is None
    result = analyze(_exports())
    assert (result["sampled_sends"], result["traces"], result["kept"]) == (4, 2, 1)
    assert result["hops"]["commit"]["p50_ms"] == 6.0  # of 3.0 and 6.0, the upper rank


def test_summary_percentiles_and_shares_of_the_median() -> None:
    """p50 and p90 by loadgen's rank; a hop's share is its median over its total's
    median (the ack's for the reply), a total's is 1."""
    runs = [{k: m * v for k, v in A_HOPS.items()} for m in (3, 1, 2)]
    summary = summarize(runs)
    assert set(summary) == {h.key for h in HOPS}
    assert summary["commit"] == {"p50_ms": 6.0, "p90_ms": 9.0, "share": 0.375}
    assert summary["reply_to_ack"]["share"] == pytest.approx(1 / 3, abs=1e-4)
    assert summary["receive_to_ack"]["share"] == 1.0
    empty = summarize([])
    assert math.isnan(empty["commit"]["p50_ms"]) and math.isnan(empty["commit"]["share"])
