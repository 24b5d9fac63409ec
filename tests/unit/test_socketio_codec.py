"""Byte fixtures for the Engine.IO v4 / Socket.IO v5 codec (chat_gateway.protocol.socketio)."""

from __future__ import annotations

import msgspec
import pytest

from chat_gateway.protocol.messages import (
    EVENT_NAME_RULE,
    MAX_ACK_ID,
    BadEvent,
    ClientEvent,
    Close,
    Inbound,
    NamespaceConnect,
    NamespaceDisconnect,
    Noop,
    Ping,
    Pong,
    ProtocolError,
)
from chat_gateway.protocol.socketio import (
    CLOSE,
    MAX_NAMESPACE_LENGTH,
    PING,
    PONG,
    RESERVED_EVENTS,
    SocketIOCodec,
)

MAX_PAYLOAD = 1000
BINARY = "binary attachments are not supported"


def bad(message: str, event: str | None = None, ack_id: int | None = None) -> BadEvent:
    """The BadEvent the codec builds for a shape error."""
    return BadEvent("INVALID_ARGUMENT", message, event, ack_id)


@pytest.fixture
def codec() -> SocketIOCodec:
    """A fresh codec with a small max payload."""
    return SocketIOCodec(ping_interval_ms=25000, ping_timeout_ms=20000, max_payload=MAX_PAYLOAD)


def test_open_packet(codec: SocketIOCodec) -> None:
    """The handshake is ``0`` then the session JSON with no upgrades."""
    packet = codec.open_packet("s1d")
    assert packet == (
        '0{"sid":"s1d","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000}'
    )


def test_control_constants() -> None:
    """PING, PONG and CLOSE are the bare Engine.IO packet types, also on the class."""
    assert (PING, PONG, CLOSE) == (b"2", b"3", b"1")
    assert (SocketIOCodec.PING, SocketIOCodec.PONG, SocketIOCodec.CLOSE) == (PING, PONG, CLOSE)


def test_constructor_rejects_non_positive_settings() -> None:
    """A zero max payload is a configuration error."""
    with pytest.raises(ValueError):
        SocketIOCodec(ping_interval_ms=1, ping_timeout_ms=1, max_payload=0)


@pytest.mark.parametrize(
    ("frame", "expected"),
    [("1", Close()), ("2", Ping()), ("2probe", Ping()), ("3", Pong()), ("6", Noop())],
)
def test_engineio_control_packets(codec: SocketIOCodec, frame: str, expected: Inbound) -> None:
    """Engine.IO control packets decode to their own items; trailing data is ignored."""
    assert codec.receive(frame) == [expected]


@pytest.mark.parametrize("frame", ["", "0", '0{"sid":"x"}', "5", "7", "x", "{}", "-1"])
def test_engineio_invalid_packets(codec: SocketIOCodec, frame: str) -> None:
    """Empty, unknown, open and upgrade Engine.IO packets close the connection with 1002."""
    with pytest.raises(ProtocolError) as info:
        codec.receive(frame)
    assert info.value.close_code == 1002


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ("40", NamespaceConnect("/", None)),
        ('40{"token":"123"}', NamespaceConnect("/", {"token": "123"})),
        ("40/,", NamespaceConnect("/", None)),
        ("40/custom,", NamespaceConnect("/custom", None)),
        ("40/custom", NamespaceConnect("/custom", None)),
        ('40/custom,{"token":"abc"}', NamespaceConnect("/custom", {"token": "abc"})),
        ("41", NamespaceDisconnect("/")),
        ("41/custom", NamespaceDisconnect("/custom")),
        ("41/custom,", NamespaceDisconnect("/custom")),
    ],
)
def test_namespace_packets(codec: SocketIOCodec, frame: str, expected: Inbound) -> None:
    """CONNECT and DISCONNECT decode for the main and any other namespace."""
    assert codec.receive(frame) == [expected]


@pytest.mark.parametrize(
    "frame",
    ["40[1]", '40"tok"', "40null", "40{", "401", '407{"a":1}', "40/a,1{}", "41{}", "415", "41/a,x"],
)
def test_malformed_namespace_packets(codec: SocketIOCodec, frame: str) -> None:
    """CONNECT with a non-object or ack id, and DISCONNECT with any rest, close the connection."""
    with pytest.raises(ProtocolError):
        codec.receive(frame)


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ('42["hello",{"a":1}]', ClientEvent("hello", {"a": 1}, None)),
        ('42["hello"]', ClientEvent("hello", None, None)),
        ('42["hello",null]', ClientEvent("hello", None, None)),
        ('4213["hello",[1,"2"]]', ClientEvent("hello", [1, "2"], 13)),
        ('420["x",true]', ClientEvent("x", True, 0)),
        ('4207["x",1]', ClientEvent("x", 1, 7)),
        ('42/,5["x",1]', ClientEvent("x", 1, 5)),
        (f'42{MAX_ACK_ID}["x",1]', ClientEvent("x", 1, MAX_ACK_ID)),
        ('42["snow \\u2603 é",{"t":"\\"q\\""}]', ClientEvent("snow \u2603 é", {"t": '"q"'}, None)),
    ],
)
def test_events(codec: SocketIOCodec, frame: str, expected: ClientEvent) -> None:
    """EVENT packets decode to a ClientEvent with the first argument and the ack id."""
    assert codec.receive(frame) == [expected]


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ("42[1]", bad(EVENT_NAME_RULE)),
        ("423[1.5]", bad(EVENT_NAME_RULE, ack_id=3)),
        ('42[""]', bad(EVENT_NAME_RULE)),
        ('42["' + "a" * 129 + '"]', bad(EVENT_NAME_RULE)),
        ('42["a",1,2]', bad("events take at most one argument", "a")),
    ],
)
def test_bad_events(codec: SocketIOCodec, frame: str, expected: BadEvent) -> None:
    """Valid EVENTs that are not events we serve become BadEvents with the ack id."""
    assert codec.receive(frame) == [expected]


@pytest.mark.parametrize(
    "frame",
    ["42", "427", "42{}", '429"x"', "42[]", "42null", '423[null,"x"]', "42[true]", "42[[]]",
     '42[{"a":1}]'],
)  # fmt: skip
def test_event_payloads_the_protocol_forbids_close(codec: SocketIOCodec, frame: str) -> None:
    """An EVENT payload MUST be a non-empty array whose first element names the event
    (a string or a number, as socket.io-parser checks); anything else closes with 1002."""
    with pytest.raises(ProtocolError) as info:
        codec.receive(frame)
    assert info.value.close_code == 1002


@pytest.mark.parametrize("name", sorted(RESERVED_EVENTS))
def test_reserved_event_names(codec: SocketIOCodec, name: str) -> None:
    """Every reserved Socket.IO event name sent by a client closes the connection, as the
    reference parser refuses it."""
    with pytest.raises(ProtocolError):
        codec.receive(f'421["{name}",{{}}]')


@pytest.mark.parametrize(
    "frame",
    [
        "42[",
        '42["a"',
        "42[1]x",
        "4213[",
        "42nope",
        "42-[]",
        '42/chat,["a",1]',
        '42/chat,3["a",1]',
        '42123456789012345678["a"]',
        f'42{MAX_ACK_ID + 1}["a"]',
        '44{"message":"x"}',
        "4",
        "47",
        "4x",
        "4-1",
        "4/",
    ],
)
def test_undecodable_packets(codec: SocketIOCodec, frame: str) -> None:
    """Bad JSON, oversize ack ids, foreign namespaces and unknown types close with 1002."""
    with pytest.raises(ProtocolError) as info:
        codec.receive(frame)
    assert info.value.close_code == 1002


@pytest.mark.parametrize("frame", ["433[]", '433["ok",1]', "430[{}]"])
def test_client_acks_are_ignored(codec: SocketIOCodec, frame: str) -> None:
    """A well-formed ACK from the client yields nothing."""
    assert codec.receive(frame) == []


@pytest.mark.parametrize("frame", ["43[]", "433{}", "433", "43/x,1[]", "433["])
def test_malformed_client_acks(codec: SocketIOCodec, frame: str) -> None:
    """An ACK without an id, an array payload, or on another namespace closes the connection."""
    with pytest.raises(ProtocolError):
        codec.receive(frame)


def test_binary_event_swallows_attachments(codec: SocketIOCodec) -> None:
    """BINARY_EVENT is a BadEvent and its announced binary frames are swallowed, then not."""
    frame = '452-7["upload",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]'
    first = codec.receive(frame)
    pending = codec.pending_attachments
    swallowed = [codec.receive(b"\x01\x02"), codec.receive(b"")]
    after = codec.receive('42["next",1]')
    with pytest.raises(ProtocolError) as info:
        codec.receive(b"\x03")
    assert first == [bad(BINARY, "upload", 7)]
    assert pending == 2
    assert swallowed == [[], []]
    assert after == [ClientEvent("next", 1, None)]
    assert info.value.reason == "unexpected binary frame"


@pytest.mark.parametrize(
    ("frame", "expected", "pending"),
    [
        ('461-3[{"_placeholder":true,"num":0}]', bad(BINARY), 1),
        ('450-["x"]', bad(BINARY, "x"), 0),
        ("4510-[1]", bad(BINARY), 10),
        ("451-", bad(BINARY), 1),
        ('451-/,["x"]', bad(BINARY, "x"), 1),
    ],
)
def test_binary_packets(codec: SocketIOCodec, frame: str, expected: BadEvent, pending: int) -> None:
    """BINARY_ACK and BINARY_EVENT are BadEvents without echoing the ack of a BINARY_ACK."""
    assert codec.receive(frame) == [expected]
    assert codec.pending_attachments == pending


def test_text_while_attachments_pending(codec: SocketIOCodec) -> None:
    """A text frame where an announced attachment should be closes the connection."""
    codec.receive('451-["x"]')
    with pytest.raises(ProtocolError):
        codec.receive('42["x"]')


def test_unexpected_binary_frame(codec: SocketIOCodec) -> None:
    """A binary frame with no attachment announced closes the connection."""
    with pytest.raises(ProtocolError):
        codec.receive(b"\x00")


@pytest.mark.parametrize(
    "frame",
    ['45-["x"]', '45["x"]', '45a-["x"]', '45111-["x"]', '4511-["x"]', "461-[]", '451-/x,["x"]'],
)
def test_malformed_binary_packets(codec: SocketIOCodec, frame: str) -> None:
    """Bad attachment counts, a BINARY_ACK without id, or a foreign namespace close the link."""
    with pytest.raises(ProtocolError):
        codec.receive(frame)


def test_namespace_length_limit(codec: SocketIOCodec) -> None:
    """A namespace of the maximum length is accepted and one character more is not."""
    longest = "/" + "n" * (MAX_NAMESPACE_LENGTH - 1)
    accepted = codec.receive(f"40{longest},")
    with pytest.raises(ProtocolError):
        codec.receive(f"40{longest}n,")
    assert accepted == [NamespaceConnect(longest, None)]


@pytest.mark.parametrize(
    "frame",
    [
        '42["x","' + "a" * (MAX_PAYLOAD - 9) + '"]',
        '42["x","' + "é" * 500 + '"]',
        b"x" * (MAX_PAYLOAD + 1),
    ],
)
def test_oversize_frames(codec: SocketIOCodec, frame: str | bytes) -> None:
    """A frame longer than max_payload bytes (UTF-8 counted) closes with 1009."""
    if isinstance(frame, bytes):
        codec.receive('451-["x"]')
    with pytest.raises(ProtocolError) as info:
        codec.receive(frame)
    assert info.value.close_code == 1009


def test_frame_of_exactly_max_payload(codec: SocketIOCodec) -> None:
    """A frame of exactly max_payload bytes is accepted."""
    frame = '42["x","' + "é" * ((MAX_PAYLOAD - 11) // 2) + '"]'
    frame += " " * (MAX_PAYLOAD - len(frame.encode()))
    assert len(frame.encode()) == MAX_PAYLOAD
    assert codec.receive(frame) == [ClientEvent("x", "é" * ((MAX_PAYLOAD - 11) // 2), None)]


def test_encode_connect() -> None:
    """CONNECT replies carry the given data as JSON after ``40``."""
    assert SocketIOCodec.encode_connect({"sid": "abc"}) == b'40{"sid":"abc"}'
    assert SocketIOCodec.encode_connect({"sid": "a", "pid": "p"}) == b'40{"sid":"a","pid":"p"}'


@pytest.mark.parametrize(
    ("namespace", "data", "expected"),
    [
        ("/", None, b'44{"message":"Invalid namespace"}'),
        ("/random", None, b'44/random,{"message":"Invalid namespace"}'),
        ("/", {"code": "X"}, b'44{"message":"Invalid namespace","data":{"code":"X"}}'),
    ],
)
def test_encode_connect_error(namespace: str, data: object, expected: bytes) -> None:
    """CONNECT_ERROR names a non-main namespace and includes data only when given."""
    assert SocketIOCodec.encode_connect_error(namespace, "Invalid namespace", data) == expected


@pytest.mark.parametrize("namespace", ["random", "/a,b", ""])
def test_encode_connect_error_rejects_bad_namespace(namespace: str) -> None:
    """A namespace that would break the header is refused."""
    with pytest.raises(ValueError):
        SocketIOCodec.encode_connect_error(namespace, "no")


@pytest.mark.parametrize(
    ("name", "payload", "extra", "expected"),
    [
        ("message", b'{"a":1}', (), b'42["message",{"a":1}]'),
        ('q"\\\n', b"null", (), b'42["q\\"\\\\\\n",null]'),
        ("m", b"{}", (b'"off"', b"1"), b'42["m",{},"off",1]'),
    ],
)
def test_encode_event(name: str, payload: bytes, extra: tuple[bytes, ...], expected: bytes) -> None:
    """Events are ``42`` then a JSON array: escaped name, payload bytes as given, extra args."""
    assert SocketIOCodec.encode_event(name, payload, extra_args_json=extra) == expected


@pytest.mark.parametrize(
    ("name", "payload", "extra"),
    [("connect", b"1", ()), ("m", b"", ()), ("m", b"1", (b"",))],
)
def test_encode_event_rejects(name: str, payload: bytes, extra: tuple[bytes, ...]) -> None:
    """Reserved names and empty JSON arguments are refused."""
    with pytest.raises(ValueError):
        SocketIOCodec.encode_event(name, payload, extra_args_json=extra)


def test_encode_ack() -> None:
    """Acks are ``43``, the id, then the payload in a one-element array."""
    assert SocketIOCodec.encode_ack(7, b'{"ok":true}') == b'437[{"ok":true}]'
    assert msgspec.json.decode(SocketIOCodec.encode_ack(MAX_ACK_ID, b"1")[18:]) == [1]


@pytest.mark.parametrize(("ack_id", "payload"), [(-1, b"1"), (MAX_ACK_ID + 1, b"1"), (1, b"")])
def test_encode_ack_rejects(ack_id: int, payload: bytes) -> None:
    """Out-of-range ack ids and empty payloads are refused."""
    with pytest.raises(ValueError):
        SocketIOCodec.encode_ack(ack_id, payload)
