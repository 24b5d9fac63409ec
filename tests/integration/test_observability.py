"""Traces across every hop, Prometheus metrics that move, trace ids in logs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from chat_devstack.stack import Stack
from tests.conftest import MakeStack
from tests.support.clients import NativeClient, SioClient, unique_room
from tests.support.http import get_text
from tests.support.otlp import OtlpReceiver, ReceivedSpan

pytestmark = pytest.mark.integration

SPAN_KIND_SERVER, SPAN_KIND_PRODUCER, SPAN_KIND_CONSUMER = 2, 4, 5
STATUS_ERROR = 2


@pytest.fixture
async def receiver() -> AsyncIterator[OtlpReceiver]:
    otlp = OtlpReceiver()
    await otlp.start()
    yield otlp
    await otlp.stop()


def _by_id(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {s.span_id: s for s in spans}


def _one(spans: list[ReceivedSpan], **match: object) -> ReceivedSpan:
    found = [s for s in spans if all(getattr(s, k) == v for k, v in match.items())]
    assert len(found) == 1, (match, [(s.service, s.name) for s in spans])
    return found[0]


async def test_one_message_is_one_trace_across_every_process(
    make_stack: MakeStack, receiver: OtlpReceiver
) -> None:
    """Sending one message yields one trace: the gateway's event span, the NATS hop, the
    history handler with its commit and Postgres spans, and a fan-out span at each gateway,
    linked parent to child (every trace recorded); a handled error's log line carries its
    trace id."""
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
    }
    stack = await make_stack(gateways=2, env=env)
    room = unique_room()
    a = await SioClient().connect(stack.gateway_urls[0])
    b = await NativeClient().connect(stack.gateway_urls[1])
    try:
        await a.call("join", {"email": "t@example.com", "roomId": room})
        await b.call("join", {"email": "u@example.com", "roomId": room})
        sent = await a.call("send_message", {"roomId": room, "text": "traced"})
        assert sent["ok"]
        await b.wait_messages(room, 1)

        def root_of(spans: list[ReceivedSpan]) -> ReceivedSpan | None:
            roots = [
                s for s in spans if s.name == "chat send_message" and s.service == "chat-gateway"
            ]
            return roots[0] if roots else None

        await receiver.wait_for(lambda spans: root_of(spans) is not None)
        root = root_of(receiver.spans)
        assert root is not None and root.kind == SPAN_KIND_SERVER and root.parent_id == ""

        def complete(spans: list[ReceivedSpan]) -> bool:
            trace = [s for s in spans if s.trace_id == root.trace_id]
            delivers = {s.instance for s in trace if s.name == f"deliver {room}"}
            has_db = any(
                s.attributes.get("db.system") == "postgresql"
                for s in trace
                if s.service == "chat-history"
            )
            return len(delivers) == 2 and has_db and any(s.name == "history.commit" for s in trace)

        await receiver.wait_for(complete)
        trace = [s for s in receiver.spans if s.trace_id == root.trace_id]
        spans = _by_id(trace)
        batch = _one(trace, name="history.append_batch", service="chat-gateway")
        assert batch.parent_id == root.span_id
        send = _one(trace, name="send chat.history.append_batch", service="chat-gateway")
        assert send.kind == SPAN_KIND_PRODUCER and send.parent_id == batch.span_id
        assert send.attributes["messaging.system"] == "nats"
        process = _one(trace, name="process chat.history.append_batch", service="chat-history")
        assert process.kind == SPAN_KIND_CONSUMER and process.parent_id == send.span_id
        commit = _one(trace, name="history.commit")
        assert commit.parent_id == process.span_id
        db_spans = [s for s in trace if s.attributes.get("db.system") == "postgresql"]
        for db in db_spans:
            parent = db.parent_id
            while parent and parent != commit.span_id:
                parent = spans[parent].parent_id
            assert parent == commit.span_id, "Postgres spans sit under the commit"
        publish = _one(trace, name=f"send chat.room.{room}.events")
        assert publish.parent_id == process.span_id and publish.kind == SPAN_KIND_PRODUCER
        delivers = [s for s in trace if s.name == f"deliver {room}"]
        assert {s.service for s in delivers} == {"chat-gateway"}
        for deliver in delivers:
            assert deliver.kind == SPAN_KIND_CONSUMER
            assert deliver.parent_id == publish.span_id
            assert (publish.trace_id, publish.span_id) in deliver.links

        # A handled error: its log line carries the trace id of its trace.
        conn = await asyncpg.connect(stack.postgres_dsn)
        try:
            await conn.execute("ALTER TABLE messages ADD CONSTRAINT no_zap CHECK (body <> 'zap')")
        finally:
            await conn.close()
        failed = await a.call("send_message", {"roomId": room, "text": "zap"})
        assert failed["error"]["code"] == "INTERNAL"
        await receiver.wait_for(
            lambda spans: any(
                s.name == "chat send_message" and s.status_code == STATUS_ERROR for s in spans
            )
        )
        error_span = next(
            s
            for s in receiver.spans
            if s.name == "chat send_message" and s.status_code == STATUS_ERROR
        )
        log = stack.of_kind("gateway")[0].log_path.read_text().splitlines()
        records = [json.loads(line) for line in log if line.startswith("{")]
        logged = [r for r in records if r.get("code") == "INTERNAL"]
        assert logged and logged[-1]["trace_id"] == error_span.trace_id
    finally:
        await a.close()
        await b.close()


async def test_the_shipped_sampler_keeps_an_error_it_did_not_sample(
    make_stack: MakeStack, receiver: OtlpReceiver
) -> None:
    """With a sampler that records no trace, messages export nothing, but a failed send is
    kept where it failed: the gateway's event span and history's commit, with
    ``chat.kept=error``, in the trace the gateway's log line names."""
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0",
    }
    stack = await make_stack(env=env)
    room = unique_room()
    a = await SioClient().connect(stack.client_url)
    try:
        await a.call("join", {"email": "k@example.com", "roomId": room})
        for i in range(5):
            assert (await a.call("send_message", {"roomId": room, "text": f"m{i}"}))["ok"]
        conn = await asyncpg.connect(stack.postgres_dsn)
        try:
            await conn.execute("ALTER TABLE messages ADD CONSTRAINT no_zop CHECK (body <> 'zop')")
        finally:
            await conn.close()
        failed = await a.call("send_message", {"roomId": room, "text": "zop"})
        assert failed["error"]["code"] == "INTERNAL"

        def kept(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
            return [s for s in spans if s.attributes.get("chat.kept") == "error"]

        def both_hops(spans: list[ReceivedSpan]) -> bool:
            names = {s.name for s in kept(spans)}
            return {"chat send_message", "history.commit"} <= names

        await receiver.wait_for(both_hops)
        root = _one(kept(receiver.spans), name="chat send_message", service="chat-gateway")
        assert root.status_code == STATUS_ERROR and root.kind == SPAN_KIND_SERVER
        assert root.attributes["chat.room"] == room[:64]
        commit = _one(kept(receiver.spans), name="history.commit", service="chat-history")
        assert commit.trace_id == root.trace_id and commit.status_code == STATUS_ERROR
        assert all(s.attributes.get("chat.kept") for s in receiver.spans), "nothing else"
        log = stack.of_kind("gateway")[0].log_path.read_text().splitlines()
        records = [json.loads(line) for line in log if line.startswith("{")]
        logged = [r for r in records if r.get("code") == "INTERNAL"]
        assert logged and logged[-1]["trace_id"] == root.trace_id
    finally:
        await a.close()


async def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, text = await get_text(url)
    assert status == 200
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def _scrape_all(
    stack: Stack,
) -> dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    return {
        s.name: await _scrape(f"http://127.0.0.1:{s.http_port}/metrics") for s in stack.services
    }


def _value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_move_as_traffic_flows(make_stack: MakeStack) -> None:
    """Each service's /metrics parses with the Prometheus parser and the named series move."""
    stack = await make_stack()
    before = await _scrape_all(stack)
    room = unique_room()
    a = await SioClient().connect(stack.client_url)
    b = await NativeClient().connect(stack.client_url)
    try:
        await a.call("join", {"email": "m@example.com", "roomId": room})
        await b.call("join", {"email": "n@example.com", "roomId": room})
        for i in range(5):
            await a.call("send_message", {"roomId": room, "text": f"m{i}"})
        await b.wait_messages(room, 5)
        assert (await b.call("get_history", {"roomId": unique_room()}))["error"][
            "code"
        ] == "NOT_IN_ROOM"
        during = await _scrape_all(stack)
    finally:
        await a.close()
        await b.close()
    gw_before, gw = before["gateway-1"], during["gateway-1"]
    assert _value(gw, "chat_gateway_connections", protocol="socketio") == 1
    assert _value(gw, "chat_gateway_connections", protocol="native") == 1
    assert (
        _value(gw, "chat_gateway_events_total", event="send_message", code="OK")
        - _value(gw_before, "chat_gateway_events_total", event="send_message", code="OK")
        == 5
    )
    assert _value(gw, "chat_gateway_events_total", event="get_history", code="NOT_IN_ROOM") >= 1
    assert _value(gw, "chat_errors_total", code="NOT_IN_ROOM", where="client event") >= 1
    assert (
        _value(gw, "chat_gateway_e2e_seconds_count")
        - _value(gw_before, "chat_gateway_e2e_seconds_count")
        == 5
    )
    assert _value(gw, "chat_gateway_ack_seconds_count", event="send_message") >= 5
    assert _value(gw, "chat_gateway_deliveries_total", event="new_message") >= 10
    assert (
        _value(
            gw, "chat_nats_request_seconds_count", subject="chat.history.append_batch", result="OK"
        )
        >= 5
    )
    assert _value(gw, "chat_gateway_rooms") == 1 and _value(gw, "chat_gateway_sessions") == 2
    assert _value(gw, "chat_ready") == 1 and _value(gw, "chat_nats_connected") == 1
    hist = during["history-1"]
    assert _value(hist, "chat_history_appends_total", result="stored") >= 5
    assert _value(hist, "chat_history_batch_size_count") >= 1
    assert _value(hist, "chat_history_commit_seconds_count") >= 1
    assert _value(hist, "chat_history_pool", state="size") >= _value(
        hist, "chat_history_pool", state="min"
    )
    assert _value(hist, "chat_history_pool", state="max") == 10
    sess = during["session-1"]
    assert _value(sess, "chat_session_presence_total", event="user_joined") >= 2
