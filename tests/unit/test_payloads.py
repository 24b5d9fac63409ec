"""Validation of client event payloads."""

from __future__ import annotations

import pytest

from chat_common.errors import ChatError, ErrorCode
from chat_common.schemas import parse_value
from chat_gateway.payloads import (
    GetHistoryPayload,
    GetRoomsPayload,
    JoinPayload,
    ResumePayload,
    SendMessagePayload,
)


def test_valid_join_parses_camel_case() -> None:
    """roomId/email map onto the payload struct."""
    p = parse_value({"email": "a@b.io", "roomId": "room_1-x", "extra": 1}, JoinPayload)
    assert (p.email, p.room_id) == ("a@b.io", "room_1-x")


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        "s",
        {"email": "a@b.io"},
        {"email": "a@b.io", "roomId": "a.b"},
        {"email": "a@b.io", "roomId": "$SYS"},
        {"email": "a@b.io", "roomId": "x" * 65},
        {"email": "nope", "roomId": "r"},
        {"email": ["a@b.io"], "roomId": "r"},
        {"email": "a@b.io", "roomId": "r\n"},
        {"email": "a@b.io\n", "roomId": "r"},
    ],
)
def test_invalid_join_is_invalid_argument(data: object) -> None:
    """Anything that is not a well-formed join is INVALID_ARGUMENT."""
    with pytest.raises(ChatError) as caught:
        parse_value(data, JoinPayload)
    assert caught.value.code is ErrorCode.INVALID_ARGUMENT


def test_error_message_names_the_field_not_the_value() -> None:
    """The message says which field is wrong without echoing what was sent."""
    with pytest.raises(ChatError) as caught:
        parse_value({"email": "a@b.io", "roomId": "secret.value"}, JoinPayload)
    assert "roomId" in caught.value.message
    assert "secret" not in caught.value.message


def test_optional_fields_default_to_none() -> None:
    """clientMsgId, beforeSeq and limit are optional."""
    assert parse_value({"roomId": "r", "text": "t"}, SendMessagePayload).client_msg_id is None
    h = parse_value({"roomId": "r"}, GetHistoryPayload)
    assert (h.before_seq, h.limit) == (None, None)


def test_null_is_the_same_as_absent_for_every_key_of_get_rooms() -> None:
    """``get_rooms`` keys, all optional, take ``null`` as absent (4.1), ``follow`` too."""
    nulls = parse_value({"after": None, "limit": None, "follow": None, "email": None},
                        GetRoomsPayload)  # fmt: skip
    assert nulls == parse_value({}, GetRoomsPayload)
    assert parse_value({"follow": False}, GetRoomsPayload).follow is False


@pytest.mark.parametrize("limit", [0, 201, -1, 1.5, "10"])
def test_history_limit_bounds(limit: object) -> None:
    """limit must be an integer from 1 to 200."""
    with pytest.raises(ChatError):
        parse_value({"roomId": "r", "limit": limit}, GetHistoryPayload)


@pytest.mark.parametrize(
    "kind,data",
    [
        (GetHistoryPayload, {"roomId": "r", "beforeSeq": 2**63}),
        (GetHistoryPayload, {"roomId": "r", "beforeSeq": 10**30}),
        (GetHistoryPayload, {"roomId": "r", "beforeSeq": 0}),
        (GetHistoryPayload, {"roomId": "r", "limit": 201}),
        (ResumePayload, {"sessionId": "a", "resumeToken": "b", "lastSeq": {"r": 10**30}}),
        (ResumePayload, {"sessionId": "a", "resumeToken": "b", "lastSeq": {"r": -1}}),
        (ResumePayload, {"sessionId": "a\x00", "resumeToken": "b"}),
        (ResumePayload, {"sessionId": "a", "resumeToken": "b" * 129}),
        (SendMessagePayload, {"roomId": "r", "text": "a\x00b"}),
        (SendMessagePayload, {"roomId": "r", "text": "bell\x07"}),
        (SendMessagePayload, {"roomId": "r", "text": "esc\x1b[2J"}),
        (SendMessagePayload, {"roomId": "r", "text": "del\x7f"}),
        (SendMessagePayload, {"roomId": "r", "text": "t", "clientMsgId": "id\x00"}),
        (SendMessagePayload, {"roomId": "r", "text": "t", "clientMsgId": ""}),
        (JoinPayload, {"email": "a\x00@b.io", "roomId": "r"}),
        (JoinPayload, {"email": "a@b\x7f.io", "roomId": "r"}),
    ],
)
def test_edge_values_are_invalid_arguments(kind: type, data: dict[str, object]) -> None:
    """Numbers beyond a Postgres bigint, control characters, odd ids: INVALID_ARGUMENT at
    the edge, never a store error or a retryable code."""
    with pytest.raises(ChatError) as caught:
        parse_value(data, kind)
    assert caught.value.code is ErrorCode.INVALID_ARGUMENT


def test_text_keeps_tabs_newlines_and_any_script() -> None:
    """Tab, line feed, carriage return, emoji and other scripts are content."""
    text = "line one\r\nline\ttwo 𝄞 日本語 \u200b"
    assert parse_value({"roomId": "r", "text": text}, SendMessagePayload).text == text


def test_control_characters_are_named_without_the_value() -> None:
    """The refusal says what is wrong and where, and does not echo the text."""
    with pytest.raises(ChatError) as caught:
        parse_value({"roomId": "r", "text": "secret\x00"}, SendMessagePayload)
    assert caught.value.message == "Invalid characters at `text`"


def test_a_service_request_error_names_the_field_never_the_value() -> None:
    """Requests between services are parsed like client payloads: one sanitised message."""
    from chat_common.schemas import FetchRequest, parse_request

    with pytest.raises(ChatError) as bad:
        parse_request(b'{"roomId": "no.dots.secret", "limit": 5}', FetchRequest)
    assert bad.value.code is ErrorCode.INVALID_ARGUMENT
    assert bad.value.message == "Invalid format at `roomId`"
    assert "secret" not in bad.value.message
