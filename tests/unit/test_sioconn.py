"""The Socket.IO connection without I/O: frames in, actions out. The vectors marked
"official" are the cases of the socket.io-protocol test suite (test-suite/test-suite.js),
as a server without the suite's echo handlers answers them."""

from __future__ import annotations

import json

import pytest

from chat_common.errors import ChatError, ErrorCode
from chat_gateway.closecodes import CLOSE_GOODBYE, CLOSE_PROTOCOL_ERROR, CLOSE_UNAUTHENTICATED
from chat_gateway.connection.sioconn import (
    Close,
    Connect,
    Heard,
    Leave,
    Phase,
    Send,
    SocketIOConnection,
    Submit,
)
from chat_gateway.protocol.messages import BadEvent, ClientEvent
from chat_gateway.protocol.socketio import SocketIOCodec

PID = "0123456789abcdef0123456789abcdef." + "t" * 43


def _auth(**auth: object) -> str:
    return "40" + json.dumps(auth, separators=(",", ":"))


def _connection(*, recovery: bool = True) -> SocketIOConnection:
    codec = SocketIOCodec(ping_interval_ms=25000, ping_timeout_ms=20000, max_payload=65536)
    return SocketIOConnection(codec, recovery=recovery)


def _connected() -> SocketIOConnection:
    conn = _connection()
    conn.receive("40")
    return conn


def test_the_open_packet_names_the_engine_sid_and_the_limits() -> None:
    """The first frame is the Engine.IO handshake with the configured values."""
    packet = _connection().open_packet("abc", upgrades=("websocket",))
    assert packet == (
        b'0{"sid":"abc","upgrades":["websocket"],"pingInterval":25000,'
        b'"pingTimeout":20000,"maxPayload":65536}'
    )


def test_official_connect_to_the_main_namespace() -> None:
    """Official: ``40`` connects ``/``; the reply carries the sid (and, with recovery on,
    the pid)."""
    conn = _connection()
    assert conn.receive("40") == [Connect(None, None, {}, True)]
    assert conn.phase is Phase.CONNECTED
    assert conn.accepted(socket_id="s1", pid=PID, dropped=[]) == [
        Send(b'40{"sid":"s1","pid":"' + PID.encode() + b'"}')
    ]


def test_official_connect_with_a_payload_hands_its_token_on() -> None:
    """Official: ``40{"token":"123"}``: the auth object's token goes to authentication."""
    assert _connection().receive('40{"token":"123"}') == [Connect("123", None, {}, True)]


@pytest.mark.parametrize("frame", ["40/random", "40/custom,", '40/custom,{"token":"abc"}'])
def test_official_connect_to_another_namespace_is_refused_and_changes_nothing(frame: str) -> None:
    """Official: only ``/`` is served: ``44/<ns>,{"message":"Invalid namespace"}``."""
    conn = _connection()
    namespace = frame[2:].split(",")[0]
    refusal = b"44" + namespace.encode() + b',{"message":"Invalid namespace"}'
    assert conn.receive(frame) == [Send(refusal)]
    assert conn.phase is Phase.AWAITING_CONNECT


@pytest.mark.parametrize("frame", ["4abc", "42{}", '42abc["message-with-ack",1,"2"]'])
def test_official_invalid_packets_close_the_connection(frame: str) -> None:
    """Official: an unknown packet type, a payload that is not an array, a malformed ack id
    close the connection (1002) and end its session; nothing after is read."""
    conn = _connected()
    (close,) = conn.receive(frame)
    assert close == Close(CLOSE_PROTOCOL_ERROR, close.reason, resumable=False, protocol_error=True)
    assert conn.phase is Phase.CLOSED
    assert conn.receive('42["join",{}]') == []


def test_official_disconnect_from_the_main_namespace_leaves_it() -> None:
    """Official: ``41`` leaves ``/`` (the session ends, the Engine.IO connection stays); a
    later ``40`` connects afresh."""
    conn = _connected()
    assert conn.receive("41") == [Leave()]
    assert conn.phase is Phase.AWAITING_CONNECT
    assert conn.receive('42["join",{}]') == []
    assert conn.receive("40") == [Connect(None, None, {}, True)]


def test_events_count_only_while_the_namespace_is_connected() -> None:
    """Before CONNECT events are dropped; after it they are submitted with their ack id; a
    second CONNECT to ``/`` is ignored."""
    conn = _connection()
    assert conn.receive('421["join",{"roomId":"a"}]') == []
    conn.receive("40")
    assert conn.receive('421["join",{"roomId":"a"}]') == [
        Submit(ClientEvent("join", {"roomId": "a"}, 1))
    ]
    assert conn.receive("40") == []


def test_a_binary_event_is_refused_as_an_event() -> None:
    """A BINARY_EVENT is valid Socket.IO but not served: an INVALID_ARGUMENT for its ack."""
    (submit,) = _connected().receive('451-7["upload",{"_placeholder":true,"num":0}]')
    assert isinstance(submit, Submit) and isinstance(submit.event, BadEvent)
    assert (submit.event.code, submit.event.ack_id) == ("INVALID_ARGUMENT", 7)


def test_engineio_control_packets() -> None:
    """A client's ping gets a pong, its pong is heard, a noop is nothing, and a close packet
    is a goodbye (1000) that ends the session."""
    conn = _connected()
    assert conn.receive("2") == [Send(b"3")]
    assert conn.receive("3") == [Heard()]
    assert conn.receive("6") == []
    assert conn.receive("1") == [Close(CLOSE_GOODBYE, "engine.io close", resumable=False)]
    assert conn.phase is Phase.CLOSED


def test_a_recovering_connect_parses_pid_and_offset_once() -> None:
    """``pid`` and ``offset`` are read into the session to recover and each room's
    position; a malformed offset is no positions, a malformed pid no recovery."""
    conn = _connection()
    (connect,) = conn.receive(_auth(pid=PID, offset="lobby:3,dev:0"))
    assert connect == Connect(None, tuple(PID.split(".")), {"lobby": 3, "dev": 0}, True)
    (bad_offset,) = _connection().receive(_auth(pid=PID, offset="lobby"))
    assert isinstance(bad_offset, Connect) and bad_offset.positions == {}
    (bad_pid,) = _connection().receive('40{"pid":"nope","offset":"lobby:3"}')
    assert bad_pid == Connect(None, None, {}, True)


def test_recovery_off_means_no_pid_and_no_offsets() -> None:
    """``{"recovery": false}`` (or the setting off): no pid is read or given."""
    conn = _connection()
    assert conn.receive(_auth(recovery=False, pid=PID)) == [Connect(None, None, {}, False)]
    assert conn.accepted(socket_id="s1", pid=PID, dropped=[]) == [Send(b'40{"sid":"s1"}')]
    off = _connection(recovery=False)
    assert off.receive(_auth(pid=PID)) == [Connect(None, None, {}, False)]


def test_a_resumed_session_that_lost_rooms_says_so_twice() -> None:
    """Rooms the presented token no longer allows are named in the reply and, for
    socket.io-client applications, in an ``error`` event each."""
    conn = _connected()
    reply, error = conn.accepted(socket_id="s1", pid=PID, dropped=["vip"])
    assert reply == Send(b'40{"sid":"s1","pid":"%s","droppedRooms":["vip"]}' % PID.encode())
    assert error == Send(
        b'42["error",{"code":"FORBIDDEN","message":"the token does not allow this room",'
        b'"event":"resume","roomId":"vip"}]'
    )


def test_a_refused_token_gets_connect_error_then_4001() -> None:
    """A bad token: CONNECT_ERROR with the code, then close 4001 (the session, never used,
    has nothing to keep); nothing after is read."""
    conn = _connected()
    refused = conn.refused(ChatError(ErrorCode.UNAUTHENTICATED, "invalid or expired token"))
    assert refused == [
        Send(b'44{"message":"invalid or expired token","data":{"code":"UNAUTHENTICATED"}}'),
        Close(CLOSE_UNAUTHENTICATED, "unauthenticated", resumable=True),
    ]
    assert conn.receive('42["join",{}]') == []
