"""The frame trace's normaliser and byte rendering (tests/support/frametrace.py)."""

from __future__ import annotations

from tests.support.frametrace import Normaliser, render_bytes

SESSION = "5d41402abc4b2a76b9719d911017c592"
TOKEN = "ffCjgApH3fkNlj8SNmRYvOCCZiZ3l3WH0xuts1khh_A"


def test_equal_values_get_the_same_placeholder_numbered_by_first_appearance() -> None:
    """A value keeps its placeholder wherever it comes back, and a pid reads as the session
    id and token it is made of."""
    lines = Normaliser().lines(
        [
            '0{"sid":"9f2c4a1be07d3c55","upgrades":[]}',
            f'40{{"sid":"9f2c4a1be07d3c55","pid":"{SESSION}.{TOKEN}"}}',
            f'{{"sessionId":"0da831b45c0767835226898f7a640ff3","resumeToken":"{TOKEN}"}}',
            f"GET /socket.io/?EIO=4&transport=websocket&sid=9f2c4a1be07d3c55 {SESSION}",
        ]
    )
    assert lines == [
        '0{"sid":"<sid-1>","upgrades":[]}',
        '40{"sid":"<sid-1>","pid":"<session-1>.<token-1>"}',
        '{"sessionId":"<session-2>","resumeToken":"<token-1>"}',
        "GET /socket.io/?EIO=4&transport=websocket&sid=<sid-1> <session-1>",
    ]


def test_message_ids_are_numbered_and_timestamps_are_not() -> None:
    """Two messages stored in the same millisecond share a ``ts``; numbering it would make
    the trace depend on timing, so every timestamp reads ``<ts>``."""
    first = '{"id":"3f9c2b7e8a6d4f1e9b0c5a7d2e4f6a8b","seq":1,"ts":"2026-11-28T21:58:16.822Z"}'
    second = '{"id":"8e1f0a2b3c4d5e6f708192a3b4c5d6e7","seq":2,"ts":"2026-11-28T21:58:16.822Z"}'
    assert Normaliser().lines([first, second, first]) == [
        '{"id":"<msg-1>","seq":1,"ts":"<ts>"}',
        '{"id":"<msg-2>","seq":2,"ts":"<ts>"}',
        '{"id":"<msg-1>","seq":1,"ts":"<ts>"}',
    ]


def test_inbox_cursors_keep_their_offset_and_activity_reads_ts() -> None:
    """An inbox cursor's listing id is random, its offset is not: the cursor a page gives
    and the one a client sends back read the same; ``lastActivity`` is a clock reading."""
    listing = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
    page = f'{{"rooms":[{{"lastActivity":"2026-12-07T01:02:03.456Z"}}],"next":"{listing}:1"}}'
    assert Normaliser().lines([page, f'["get_rooms",{{"after":"{listing}:1","limit":1}}]']) == [
        '{"rooms":[{"lastActivity":"<ts>"}],"next":"<listing-1>:1"}',
        '["get_rooms",{"after":"<listing-1>:1","limit":1}]',
    ]


def test_numeric_ack_ids_and_fixed_values_are_left_alone() -> None:
    """Only random values are replaced: a native ack ``id`` is a number the client chose."""
    line = '{"type":"ack","id":3,"data":{"ok":true,"roomId":"lobby","userCount":2}}'
    assert Normaliser().line(line) == line


def test_literals_and_the_accept_header_are_replaced() -> None:
    normaliser = Normaliser(literals={"127.0.0.1:43521": "<host>:<port>"})
    assert normaliser.line("  Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == (
        "  Sec-WebSocket-Accept: <accept-1>"
    )
    assert normaliser.line("Host: 127.0.0.1:43521") == "Host: <host>:<port>"


def test_bytes_render_as_one_line_with_control_characters_escaped() -> None:
    """Engine.IO's record separator and undecodable bytes are visible; UTF-8 text is kept."""
    assert render_bytes(b'431[{"ok":true}]\x1e42["x"]') == r'431[{"ok":true}]\x1e42["x"]'
    assert render_bytes("héllo ✓".encode() + b"\xff\n") == r"héllo ✓\xff\x0a"
