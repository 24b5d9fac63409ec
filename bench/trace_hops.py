"""One message's critical path from its trace, hop by hop: no I/O, bytes in, figures out.

bench/critical_path.py feeds it the OTLP exports the shipped configuration sent to its
sink (raw ``ExportTraceServiceRequest`` bytes). A ``send_message`` trace reads (names as
the services give them, each span the child of the one above unless said otherwise)::

    chat-gateway  chat send_message                    SERVER; chat.admission_ms
                  history.append_batch                 the gateway's append batcher
                  send chat.history.append_batch       PRODUCER, the NATS request
    chat-history  process chat.history.append_batch    CONSUMER
                  history.commit                       Postgres spans (db.system) under it
                  send chat.room.<room>.events         PRODUCER, child of the process span
    chat-gateway  deliver <room>                       CONSUMER, one per gateway

A batch span sits in its first member's trace only, so a trace holds the whole chain only
when its message led its append batch, its commit and its room's publish; the others are
skipped, as are traces with a span kept after the fact (``chat.kept``: a slow or failed
span of an unsampled trace, which would bias the figures towards the slow).

The hops (:data:`HOPS`) tile the path: the delivery path's hops add up to
``receive_to_last_write`` (with one gateway exactly; with several, the first ``deliver``
gives the hops and the last one's end the total) and the ack path's (through ``commit``,
then ``reply_to_ack``) to ``receive_to_ack``. ``admission`` comes before the root span and
is in neither total. The batch span starts when the batch leaves the gateway's plan, so an
append's wait for the batch in flight (one at a time by default) is in
``handler_to_batch``, not in ``batching_wait``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

__all__ = [
    "ACK_TOTAL",
    "FANOUT_TOTAL",
    "HOPS",
    "ROOT",
    "Hop",
    "Span",
    "analyze",
    "by_trace",
    "decode",
    "hops_of",
    "percentile",
    "summarize",
]

ROOT = "chat send_message"
"""The gateway's span of one client ``send_message`` event, the root of its trace."""
FANOUT_TOTAL = "receive_to_last_write"
"""Root start to the end of the last ``deliver``: receipt to the fan-out's last write."""
ACK_TOTAL = "receive_to_ack"
"""Root start to root end: receipt to the ack ready to be written."""


@dataclass(frozen=True, slots=True)
class Hop:
    """One row of the critical path: its key in the figures, its plain name, the total
    whose median its share is taken of (``None``: the total itself)."""

    key: str
    label: str
    total: str | None


HOPS: tuple[Hop, ...] = (
    Hop("admission", "admission (rate limits, before the root span)", FANOUT_TOTAL),
    Hop(
        "handler_to_batch",
        "handler to append batch (waiting for the batch in flight included)",
        FANOUT_TOTAL,
    ),
    Hop("batching_wait", "batching wait (batch span start to its NATS request)", FANOUT_TOTAL),
    Hop("bus_to_history", "bus to history", FANOUT_TOTAL),
    Hop("history_queue", "history queue", FANOUT_TOTAL),
    Hop("commit", "commit", FANOUT_TOTAL),
    Hop("commit_postgres", "Postgres spans in the commit (sum)", FANOUT_TOTAL),
    Hop("publish", "publish (commit end to publish end)", FANOUT_TOTAL),
    Hop("bus_to_gateway", "bus to gateway (publish end to first deliver)", FANOUT_TOTAL),
    Hop("fanout_write", "fan-out write", FANOUT_TOTAL),
    Hop(FANOUT_TOTAL, "receive to last write of the fan-out", None),
    Hop("reply_to_ack", "reply to the ack (commit end to ack ready)", ACK_TOTAL),
    Hop(ACK_TOTAL, "receive to ack ready", None),
)
"""Every figure :func:`hops_of` returns, in path order."""


@dataclass(frozen=True, slots=True)
class Span:
    """One exported span: the service that sent it (resource ``service.name``), its place
    in its trace (ids in hex; ``parent_id`` empty for a root), when it ran (ns since the
    epoch) and its attributes."""

    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    start_ns: int
    end_ns: int
    attributes: Mapping[str, Any]


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def decode(exports: Iterable[bytes]) -> list[Span]:
    """Every span of every export (each an ``ExportTraceServiceRequest``)."""
    spans: list[Span] = []
    for body in exports:
        export = ExportTraceServiceRequest()
        export.ParseFromString(body)
        for resource_spans in export.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            service = str(resource.get("service.name"))
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    spans.append(
                        Span(
                            service=service,
                            name=s.name,
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_id=s.parent_span_id.hex(),
                            start_ns=s.start_time_unix_nano,
                            end_ns=s.end_time_unix_nano,
                            attributes={a.key: _value(a.value) for a in s.attributes},
                        )
                    )
    return spans


def by_trace(spans: Iterable[Span]) -> dict[str, list[Span]]:
    """The spans grouped by trace id."""
    traces: dict[str, list[Span]] = defaultdict(list)
    for span in spans:
        traces[span.trace_id].append(span)
    return dict(traces)


def _ms(ns: int) -> float:
    return ns / 1e6


@dataclass(frozen=True, slots=True)
class _Chain:
    """The spans of one message's path through the system (``delivers``: one per gateway,
    by start; ``postgres``: the Postgres spans under ``commit``)."""

    root: Span
    batch: Span
    send: Span
    process: Span
    commit: Span
    postgres: list[Span]
    publish: Span
    delivers: list[Span]


def _chain(trace: list[Span]) -> _Chain | None:
    """The chain of a ``send_message`` trace, or ``None`` when a link is missing."""
    children: dict[str, list[Span]] = defaultdict(list)
    for s in trace:
        children[s.parent_id].append(s)

    def child(parent: Span | None, name: str) -> Span | None:
        if parent is None:
            return None
        return next((s for s in children[parent.span_id] if s.name == name), None)

    root = next((s for s in children[""] if s.name == ROOT and s.service == "chat-gateway"), None)
    batch = child(root, "history.append_batch")
    send = child(batch, "send chat.history.append_batch")
    process = child(send, "process chat.history.append_batch")
    if root is None or batch is None or send is None or process is None:
        return None
    room = root.attributes.get("chat.room")
    under_process = sorted(children[process.span_id], key=lambda s: s.start_ns)
    for publish in under_process:
        if not _is_room_publish(publish.name, room):
            continue
        delivers = sorted(
            (s for s in children[publish.span_id] if s.name.startswith("deliver ")),
            key=lambda s: s.start_ns,
        )
        commits = [
            s for s in under_process if s.name == "history.commit" and s.end_ns <= publish.start_ns
        ]
        if delivers and commits:
            commit = max(commits, key=lambda s: s.end_ns)
            postgres = _postgres_under(commit, children)
            return _Chain(root, batch, send, process, commit, postgres, publish, delivers)
    return None


def _is_room_publish(name: str, room: object) -> bool:
    """Whether ``name`` is the publish of ``room``'s events (of any room's when the root
    did not say its room)."""
    if isinstance(room, str):
        return name == f"send chat.room.{room}.events"
    return name.startswith("send chat.room.") and name.endswith(".events")


def hops_of(trace: list[Span]) -> dict[str, float] | None:
    """The hop durations in ms (keys of :data:`HOPS`) of one ``send_message`` trace, or
    ``None`` when it is not one, lacks a link of the chain or holds a kept-after-the-fact
    span. Several commits or publishes under the process span (its batch split, or of
    several rooms): the publish of the root's room that has a ``deliver``, the last commit
    that ended before it."""
    if any("chat.kept" in s.attributes for s in trace):
        return None
    chain = _chain(trace)
    if chain is None:
        return None
    root, batch, send, process = chain.root, chain.batch, chain.send, chain.process
    commit, publish, delivers = chain.commit, chain.publish, chain.delivers
    first = delivers[0]
    return {
        "admission": float(root.attributes.get("chat.admission_ms") or 0.0),
        "handler_to_batch": _ms(batch.start_ns - root.start_ns),
        "batching_wait": _ms(send.start_ns - batch.start_ns),
        "bus_to_history": _ms(process.start_ns - send.start_ns),
        "history_queue": _ms(commit.start_ns - process.start_ns),
        "commit": _ms(commit.end_ns - commit.start_ns),
        "commit_postgres": _ms(sum(s.end_ns - s.start_ns for s in chain.postgres)),
        "publish": _ms(publish.end_ns - commit.end_ns),
        "bus_to_gateway": _ms(first.start_ns - publish.end_ns),
        "fanout_write": _ms(first.end_ns - first.start_ns),
        FANOUT_TOTAL: _ms(max(d.end_ns for d in delivers) - root.start_ns),
        "reply_to_ack": _ms(root.end_ns - commit.end_ns),
        ACK_TOTAL: _ms(root.end_ns - root.start_ns),
    }


def _postgres_under(span: Span, children: Mapping[str, list[Span]]) -> list[Span]:
    """The Postgres spans (``db.system`` = ``postgresql``) anywhere below ``span``."""
    found: list[Span] = []
    below = list(children.get(span.span_id, ()))
    while below:
        s = below.pop()
        if s.attributes.get("db.system") == "postgresql":
            found.append(s)
        below.extend(children.get(s.span_id, ()))
    return found


def percentile(values: list[float], q: float) -> float:
    """The value at rank ``q`` (0..1) of ``values``, as bench/loadgen.py ranks (NaN for none)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def summarize(per_trace: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per hop: ``p50_ms``, ``p90_ms`` (3 decimals) and ``share``, the hop's median over its
    total's median (:attr:`Hop.total`; 1 for a total)."""
    medians = {h.key: percentile([t[h.key] for t in per_trace], 0.5) for h in HOPS}
    summary: dict[str, dict[str, float]] = {}
    for hop in HOPS:
        values = [t[hop.key] for t in per_trace]
        total = medians[hop.total or hop.key]
        summary[hop.key] = {
            "p50_ms": round(medians[hop.key], 3),
            "p90_ms": round(percentile(values, 0.9), 3),
            "share": round(medians[hop.key] / total, 4) if total > 0 else float("nan"),
        }
    return summary


def analyze(exports: Iterable[bytes]) -> dict[str, Any]:
    """From the exports to the figures: ``spans`` decoded, ``kept`` (of them, spans kept
    after the fact: slow or failed in an unsampled trace), ``sampled_sends`` (traces with a
    ``send_message`` root), ``traces`` (complete ones, :func:`hops_of`) and ``hops``
    (:func:`summarize`)."""
    spans = decode(exports)
    traces = by_trace(spans)
    roots = sum(any(s.name == ROOT and not s.parent_id for s in trace) for trace in traces.values())
    complete = [h for trace in traces.values() if (h := hops_of(trace)) is not None]
    return {
        "spans": len(spans),
        "kept": sum("chat.kept" in s.attributes for s in spans),
        "sampled_sends": roots,
        "traces": len(complete),
        "hops": summarize(complete),
    }
