"""A session's identifiers (pid) and event offsets."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from chat_gateway.offsets import decode_offset, encode_offset
from chat_gateway.sessionids import make_pid, new_session_id, new_token, parse_pid

rooms = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)


def test_pid_round_trips() -> None:
    """A pid made from a session id and token parses back to both."""
    sid, token = new_session_id(), new_token()
    assert parse_pid(make_pid(sid, token)) == (sid, token)


def test_malformed_pids_are_rejected() -> None:
    """Anything but <32 hex>.<43 url-safe> is not a pid."""
    for bad in (None, 5, "", "abc", "x" * 200, new_session_id() + "." + "!" * 43, new_session_id()):
        assert parse_pid(bad) is None


def test_offset_lists_every_room_in_order() -> None:
    """An offset names each room with its seq, sorted by room."""
    assert encode_offset({"b": 2, "a": 10}) == "a:10,b:2"
    assert decode_offset("a:10,b:2") == {"a": 10, "b": 2}


def test_malformed_offsets_fall_back_to_nothing() -> None:
    """A malformed offset yields no positions (the store's are used)."""
    for bad in (None, 3, "", "a", "a:", "a:x", "a.b:1", "a:1,,b:2", "a:" + "9" * 30):
        assert decode_offset(bad) == {}


@given(st.dictionaries(rooms, st.integers(0, 10**15), max_size=20))
def test_offsets_round_trip(positions: dict[str, int]) -> None:
    """decode(encode(p)) == p for any positions."""
    assert decode_offset(encode_offset(positions)) == positions
