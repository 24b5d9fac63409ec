"""JSON fixtures for the native ``/ws`` codec (chat_gateway.protocol.native)."""

from __future__ import annotations

import msgspec
import pytest

from chat_gateway.protocol.messages import (
    EVENT_NAME_RULE,
    MAX_ACK_ID,
    BadEvent,
    ClientEvent,
    ProtocolError,
)
from chat_gateway.protocol.native import NativeCodec

MAX_PAYLOAD = 1000
NOT_OBJECT = "frame must be a JSON object"
BAD_ID = f"id must be an integer from 0 to {MAX_ACK_ID}"
BAD_TYPE = f"type: {EVENT_NAME_RULE}"
BAD_KEYS = "frame keys must be type, id and data"


def bad(message: str, event: str | None = None, ack_id: int | None = None) -> BadEvent:
    """The BadEvent the codec builds for a shape error."""
    return BadEvent("INVALID_ARGUMENT", message, event, ack_id)


@pytest.fixture
def codec() -> NativeCodec:
    """A codec with a small max payload."""
    return NativeCodec(max_payload=MAX_PAYLOAD)


def test_constructor_rejects_non_positive_max_payload() -> None:
    """A zero max payload is a configuration error."""
    with pytest.raises(ValueError):
        NativeCodec(max_payload=0)


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ('{"type":"send","id":3,"data":{"text":"hi"}}', ClientEvent("send", {"text": "hi"}, 3)),
        ('{"type":"send","data":[1,2]}', ClientEvent("send", [1, 2], None)),
        ('{"type":"ping"}', ClientEvent("ping", None, None)),
        ('{"type":"x","id":null,"data":1}', ClientEvent("x", 1, None)),
        ('{"type":"x","id":0}', ClientEvent("x", None, 0)),
        (f'{{"type":"x","id":{MAX_ACK_ID}}}', ClientEvent("x", None, MAX_ACK_ID)),
        (' {"data":"d", "id":5, "type":"x"} ', ClientEvent("x", "d", 5)),
        ('{"type":"\\u00e9\\"","data":"\\n"}', ClientEvent('é"', "\n", None)),
    ],
)
def test_events(codec: NativeCodec, frame: str, expected: ClientEvent) -> None:
    """Valid client frames decode to a ClientEvent with data and ack id."""
    assert codec.receive(frame) == expected


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ("[]", bad(NOT_OBJECT)),
        ("1", bad(NOT_OBJECT)),
        ('"send"', bad(NOT_OBJECT)),
        ("null", bad(NOT_OBJECT)),
        ("{}", bad(BAD_TYPE)),
        ('{"id":4}', bad(BAD_TYPE, ack_id=4)),
        ('{"type":1,"id":2}', bad(BAD_TYPE, ack_id=2)),
        ('{"type":""}', bad(BAD_TYPE)),
        ('{"type":"' + "t" * 129 + '"}', bad(BAD_TYPE)),
        ('{"type":"ack","id":1}', bad("reserved event name", "ack", 1)),
        ('{"type":"x","id":-1}', bad(BAD_ID, "x")),
        ('{"type":"x","id":1.5}', bad(BAD_ID, "x")),
        ('{"type":"x","id":1.0}', bad(BAD_ID, "x")),
        ('{"type":"x","id":true}', bad(BAD_ID, "x")),
        ('{"type":"x","id":"1"}', bad(BAD_ID, "x")),
        (f'{{"type":"x","id":{MAX_ACK_ID + 1}}}', bad(BAD_ID, "x")),
        ('{"type":5,"id":-1}', bad(BAD_ID)),
        ('{"type":"x","id":2,"extra":1}', bad(BAD_KEYS, "x", 2)),
        ('{"type":"x","payload":{}}', bad(BAD_KEYS, "x")),
    ],
)
def test_bad_events(codec: NativeCodec, frame: str, expected: BadEvent) -> None:
    """Valid JSON of the wrong shape is a BadEvent, with the ack id whenever ``id`` was valid."""
    assert codec.receive(frame) == expected


@pytest.mark.parametrize(
    ("frame", "close_code"),
    [
        (b'{"type":"x"}', 1003),
        ("", 1002),
        ("nope", 1002),
        ('{"type":', 1002),
        ('{"type":"x"} {}', 1002),
        ('{"type":"x","data":"' + "a" * MAX_PAYLOAD + '"}', 1009),
        ('{"type":"x","data":"' + "é" * 490 + '"}', 1009),
        (b"x" * (MAX_PAYLOAD + 1), 1009),
    ],
)
def test_undecodable_frames(codec: NativeCodec, frame: str | bytes, close_code: int) -> None:
    """Binary, non-JSON and oversize frames raise ProtocolError with the matching close code."""
    with pytest.raises(ProtocolError) as info:
        codec.receive(frame)
    assert info.value.close_code == close_code


def test_deeply_nested_json() -> None:
    """JSON nested beyond the decoder's recursion limit is a ProtocolError, not a crash."""
    codec = NativeCodec(max_payload=1_000_000)
    with pytest.raises(ProtocolError) as info:
        codec.receive("[" * 100_000 + "]" * 100_000)
    assert info.value.close_code == 1002


def test_encode_event() -> None:
    """Server events are ``{"type":<name>,"data":<payload>}`` with the payload bytes as given."""
    assert NativeCodec.encode_event("message", b'{"a":1}') == b'{"type":"message","data":{"a":1}}'
    encoded = NativeCodec.encode_event('q"\\\u2028', b"null")
    assert encoded == b'{"type":"q\\"\\\\\xe2\x80\xa8","data":null}'
    assert msgspec.json.decode(encoded) == {"type": 'q"\\\u2028', "data": None}


def test_encode_ack() -> None:
    """Acks are ``{"type":"ack","id":N,"data":<payload>}``."""
    assert NativeCodec.encode_ack(9, b'{"ok":true}') == b'{"type":"ack","id":9,"data":{"ok":true}}'


@pytest.mark.parametrize(("ack_id", "payload"), [(-1, b"1"), (MAX_ACK_ID + 1, b"1"), (1, b"")])
def test_encode_ack_rejects(ack_id: int, payload: bytes) -> None:
    """Out-of-range ack ids and empty payloads are refused."""
    with pytest.raises(ValueError):
        NativeCodec.encode_ack(ack_id, payload)


def test_encode_event_rejects_empty_payload() -> None:
    """An empty payload would make invalid JSON and is refused."""
    with pytest.raises(ValueError):
        NativeCodec.encode_event("m", b"")
