"""Validation of client event payloads."""

from __future__ import annotations

import pytest

from chat_common.errors import ChatError, ErrorCode
from chat_gateway.payloads import GetHistoryPayload, JoinPayload, SendMessagePayload, parse_payload


def test_valid_join_parses_camel_case() -> None:
    """roomId/email map onto the payload struct."""
    p = parse_payload({"email": "a@b.io", "roomId": "room_1-x", "extra": 1}, JoinPayload)
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
        parse_payload(data, JoinPayload)
    assert caught.value.code is ErrorCode.INVALID_ARGUMENT


def test_error_message_names_the_field_not_the_value() -> None:
    """The message says which field is wrong without echoing what was sent."""
    with pytest.raises(ChatError) as caught:
        parse_payload({"email": "a@b.io", "roomId": "secret.value"}, JoinPayload)
    assert "roomId" in caught.value.message
    assert "secret" not in caught.value.message


def test_optional_fields_default_to_none() -> None:
    """clientMsgId, beforeSeq and limit are optional."""
    assert parse_payload({"roomId": "r", "text": "t"}, SendMessagePayload).client_msg_id is None
    h = parse_payload({"roomId": "r"}, GetHistoryPayload)
    assert (h.before_seq, h.limit) == (None, None)


@pytest.mark.parametrize("limit", [0, 201, -1, 1.5, "10"])
def test_history_limit_bounds(limit: object) -> None:
    """limit must be an integer from 1 to 200."""
    with pytest.raises(ChatError):
        parse_payload({"roomId": "r", "limit": limit}, GetHistoryPayload)
