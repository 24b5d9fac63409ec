"""Hypothesis properties of the wire codecs: total decoding and encode/decode round trips."""

from __future__ import annotations

import re

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chat_gateway.protocol.messages import (
    EVENT_NAME_RULE,
    MAX_ACK_ID,
    MAX_EVENT_NAME_LENGTH,
    BadEvent,
    ClientEvent,
    Close,
    NamespaceConnect,
    NamespaceDisconnect,
    Noop,
    Ping,
    Pong,
    ProtocolError,
)
from chat_gateway.protocol.native import NativeCodec
from chat_gateway.protocol.socketio import RESERVED_EVENTS, SocketIOCodec

INBOUND_TYPES = (
    ClientEvent,
    BadEvent,
    NamespaceConnect,
    NamespaceDisconnect,
    Ping,
    Pong,
    Noop,
    Close,
)
BAD_EVENT_MESSAGES = {
    EVENT_NAME_RULE,
    f"type: {EVENT_NAME_RULE}",
    "binary attachments are not supported",
    "events take at most one argument",
    "reserved event name",
    "frame must be a JSON object",
    f"id must be an integer from 0 to {MAX_ACK_ID}",
    "frame keys must be type, id and data",
}
MAX_PAYLOAD = 4096

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
event_names = st.text(min_size=1, max_size=MAX_EVENT_NAME_LENGTH).filter(
    lambda name: name not in RESERVED_EVENTS
)
ack_ids = st.integers(0, MAX_ACK_ID)
socketio_prefixes = st.sampled_from(
    ["", "1", "2", "3", "4", "40", "40/x,", "41", "42", "421", "42/,", "43", "437", "44",
     "45", "451-", "452-3", "46", "461-2", "4/", "5", "6", "0"]
)  # fmt: skip
near_valid_frames = st.builds(
    lambda prefix, rest: prefix + rest,
    socketio_prefixes,
    st.text(max_size=40) | json_values.map(lambda value: msgspec.json.encode(value).decode()),
)
frames = st.text() | st.binary() | near_valid_frames


def check_bad_event(item: object) -> None:
    """A BadEvent carries one of the codecs' fixed messages, never client text."""
    if isinstance(item, BadEvent):
        assert item.code == "INVALID_ARGUMENT"
        assert item.message in BAD_EVENT_MESSAGES


@settings(deadline=None)
@given(st.lists(frames, max_size=8))
def test_socketio_receive_is_total(sequence: list[str | bytes]) -> None:
    """Any frame sequence yields at most one documented Inbound item per frame, or ProtocolError."""
    codec = SocketIOCodec(ping_interval_ms=1, ping_timeout_ms=1, max_payload=MAX_PAYLOAD)
    for frame in sequence:
        try:
            items = codec.receive(frame)
        except ProtocolError as error:
            assert error.close_code in {1002, 1007, 1009}
            assert len(error.reason.encode()) <= 123
            return
        assert len(items) <= 1
        for item in items:
            assert isinstance(item, INBOUND_TYPES)
            check_bad_event(item)


def _names_an_event(payload: object) -> bool:
    """What the protocol requires of an EVENT payload: a non-empty array whose first element
    is a string or a number (not a reserved name)."""
    if not isinstance(payload, list) or not payload:
        return False
    name = payload[0]
    if isinstance(name, bool) or not isinstance(name, str | int | float):
        return False
    return name not in RESERVED_EVENTS


@settings(deadline=None)
@given(json_values.filter(lambda value: not isinstance(value, int | float)), st.none() | ack_ids)
def test_socketio_valid_json_event_closes_only_when_the_protocol_says(
    payload: object, ack_id: int | None
) -> None:
    """An EVENT with a valid non-number JSON payload is a ClientEvent or BadEvent when the
    payload names an event, and a close (1002) when the protocol forbids it.

    A top-level number is left out: the wire format cannot tell its digits from an ack id.
    """
    codec = SocketIOCodec(ping_interval_ms=1, ping_timeout_ms=1, max_payload=1 << 20)
    ack = "" if ack_id is None else str(ack_id)
    frame = "42" + ack + msgspec.json.encode(payload).decode()
    if not _names_an_event(payload):
        with pytest.raises(ProtocolError) as info:
            codec.receive(frame)
        assert info.value.close_code == 1002
        return
    [item] = codec.receive(frame)
    assert isinstance(item, ClientEvent | BadEvent)
    assert item.ack_id == ack_id
    check_bad_event(item)


@settings(deadline=None)
@given(st.text() | st.binary() | json_values.map(msgspec.json.encode).map(bytes.decode))
def test_native_receive_is_total(frame: str | bytes) -> None:
    """Any frame is a ClientEvent, a BadEvent with a fixed message, or a ProtocolError."""
    codec = NativeCodec(max_payload=MAX_PAYLOAD)
    try:
        item = codec.receive(frame)
    except ProtocolError as error:
        assert error.close_code in {1002, 1003, 1007, 1009}
        return
    assert isinstance(item, ClientEvent | BadEvent)
    check_bad_event(item)


@settings(deadline=None)
@given(json_values)
def test_native_valid_json_never_closes(value: object) -> None:
    """Any valid JSON text frame is a ClientEvent or a BadEvent, never a close."""
    codec = NativeCodec(max_payload=1 << 20)
    item = codec.receive(msgspec.json.encode(value).decode())
    assert isinstance(item, ClientEvent | BadEvent)


@settings(deadline=None)
@given(event_names, json_values, st.lists(json_values, max_size=3))
def test_socketio_event_round_trip(name: str, payload: object, extra: list[object]) -> None:
    """``encode_event`` output, stripped of ``42``, is the JSON array a client expects."""
    encoded = SocketIOCodec.encode_event(
        name,
        msgspec.json.encode(payload),
        extra_args_json=tuple(msgspec.json.encode(arg) for arg in extra),
    )
    assert encoded.startswith(b"42[")
    assert msgspec.json.decode(encoded[2:]) == [name, payload, *extra]


@settings(deadline=None)
@given(event_names, json_values, st.none() | ack_ids)
def test_socketio_client_event_round_trip(name: str, payload: object, ack_id: int | None) -> None:
    """An event a client encodes the same way decodes back to the same ClientEvent."""
    codec = SocketIOCodec(ping_interval_ms=1, ping_timeout_ms=1, max_payload=1 << 20)
    ack = b"" if ack_id is None else str(ack_id).encode()
    frame = b"42" + ack + msgspec.json.encode([name, payload])
    assert codec.receive(frame.decode()) == [ClientEvent(name, payload, ack_id)]


@settings(deadline=None)
@given(ack_ids, json_values)
def test_socketio_ack_round_trip(ack_id: int, payload: object) -> None:
    """``encode_ack`` output parses as ``43``, the ack id, then a one-element array."""
    encoded = SocketIOCodec.encode_ack(ack_id, msgspec.json.encode(payload)).decode()
    match = re.fullmatch(r"43(\d+)(\[.*\])", encoded, re.DOTALL)
    assert match is not None
    assert int(match[1]) == ack_id
    assert msgspec.json.decode(match[2]) == [payload]


@settings(deadline=None)
@given(st.text(max_size=MAX_EVENT_NAME_LENGTH), json_values, ack_ids)
def test_native_encoders_round_trip(name: str, payload: object, ack_id: int) -> None:
    """Native events and acks decode as the JSON objects the protocol documents."""
    payload_json = msgspec.json.encode(payload)
    event = msgspec.json.decode(NativeCodec.encode_event(name, payload_json))
    ack = msgspec.json.decode(NativeCodec.encode_ack(ack_id, payload_json))
    assert event == {"type": name, "data": payload}
    assert ack == {"type": "ack", "id": ack_id, "data": payload}


@settings(deadline=None)
@given(event_names.filter(lambda name: name != "ack"), json_values, st.none() | ack_ids)
def test_native_client_frame_round_trip(name: str, payload: object, ack_id: int | None) -> None:
    """A client frame built with any name, payload and id decodes to the same ClientEvent."""
    codec = NativeCodec(max_payload=1 << 20)
    message: dict[str, object] = {"type": name, "data": payload}
    if ack_id is not None:
        message["id"] = ack_id
    frame = msgspec.json.encode(message).decode()
    assert codec.receive(frame) == ClientEvent(name, payload, ack_id)
