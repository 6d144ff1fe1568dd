"""Refused values in the user's words, with the limit: from the wire models and from the server's 422."""

import json
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from melo_protocol.client import api
from melo_protocol.client.errors import BadRequest, error_from_response
from melo_protocol.client.transport import build_request
from melo_protocol.client.validation import describe_errors, duration_words
from melo_protocol.wire import RegistrationTokenCreate
from melo_protocol.wire.chats import (
    MAX_CIPHERTEXT_CHARS,
    MAX_TEXT_BYTES,
    ChatCreate,
    ChatUpdate,
    InviteCreate,
    MessageSend,
    check_text,
)
from melo_protocol.wire.jobs import ScheduleRequest, TimerRequest


def said(model: type[BaseModel], **values: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        model(**values)
    return describe_errors(caught.value.errors())


@pytest.mark.parametrize(("model", "values", "expected"), [
    (MessageSend, {"txn_id": "t", "text": "x" * 70_000}, "message too long: 70,000 characters, at most 65,536"),
    (MessageSend, {"txn_id": "t", "text": "é" * 40_000},
     "message too long: 40,000 characters (80,000 bytes in UTF-8), at most 65,536 bytes"),
    (MessageSend, {"txn_id": "t", "text": "  "}, "message is empty"),
    (ScheduleRequest, {"txn_id": "t", "text": "x" * 70_000, "send_at": "2030-01-01T00:00:00Z"},
     "message too long: 70,000 characters, at most 65,536"),
    (InviteCreate, {"expires_in_seconds": 1000 * 86400}, "invite expiry too long: 1,000 days, at most 366 days"),
    (InviteCreate, {"expires_in_seconds": 10}, "invite expiry too short: 10 seconds, at least 1 minute"),
    (InviteCreate, {"max_uses": 200_000}, "invite uses too large: 200,000, at most 100,000"),
    (RegistrationTokenCreate, {"expires_in_seconds": 400 * 86400},
     "invite expiry too long: 400 days, at most 366 days"),
    (TimerRequest, {"seconds": 2}, "timer too short: 2 seconds, at least 5 seconds"),
    (TimerRequest, {"seconds": 700_000 * 86400}, "timer too long: 700,000 days, at most 366 days"),
    (ChatUpdate, {"slow_mode_seconds": 2 * 86400}, "slow mode too long: 2 days, at most 1 day"),
    (ChatCreate, {"kind": "group", "title": "t" * 200}, "title too long: 200 characters, at most 128"),
    (ChatCreate, {"kind": "group", "title": ""}, "title is empty"),
    (TimerRequest, {}, "timer is missing"),
])
def test_wire_refusals_in_words_with_the_limit(model: type[BaseModel], values: dict[str, Any], expected: str) -> None:
    assert said(model, **values) == expected


def test_no_internal_field_names_and_no_values() -> None:
    text = said(MessageSend, txn_id="t", text="secret " * 20_000)
    assert "secret" not in text and "text" not in text.split(":")[0]
    password = said(ChatCreate, kind="group", title="hunter2" * 100)
    assert "hunter2" not in password


def test_server_422_is_said_in_words_from_its_limits() -> None:
    """The server's details.errors carry loc, type, msg and ctx's numeric limits, not the value."""
    body = {"error": {"code": "validation_error", "message": "invalid request", "details": {"errors": [
        {"loc": ["body", "seconds"], "type": "less_than_equal", "msg": "Input should be less than or equal to "
         "31622400", "ctx": {"le": 31622400}},
        {"loc": ["body", "title"], "type": "string_too_long", "msg": "String should have at most 128 characters",
         "ctx": {"max_length": 128}},
        {"loc": ["body", "text"], "type": "value_error",
         "msg": "Value error, message too long: 70,000 characters, at most 65,536"},
        {"loc": ["body", "reply_to"], "type": "int_parsing",
         "msg": "Input should be a valid integer, unable to parse string as an integer"},
    ]}}}
    err = error_from_response(422, json.dumps(body).encode())
    assert isinstance(err, BadRequest) and err.code == "validation_error"
    assert err.message == ("timer too long: at most 366 days; title too long: at most 128 characters; "
                           "message too long: 70,000 characters, at most 65,536; "
                           "reply-to message id: input should be a valid integer, unable to parse string as an integer")
    unreadable = error_from_response(422, b'{"error": {"code": "validation_error", "message": "invalid request", '
                                          b'"details": {"errors": "?"}}}')
    assert unreadable.message == "invalid request"


def test_sdk_request_builder_says_it_in_words() -> None:
    with pytest.raises(BadRequest) as caught:
        build_request(api.set_timer, 7, 3)
    assert caught.value.message == "timer too short: 3 seconds, at least 5 seconds"
    assert caught.value.details == {"fields": ["seconds"]}


def test_text_limit_is_one_constant_and_fits_encrypted() -> None:
    assert check_text("x" * MAX_TEXT_BYTES) == "x" * MAX_TEXT_BYTES
    with pytest.raises(ValueError, match=r"^message too long: 65,537 characters, at most 65,536$"):
        check_text("x" * (MAX_TEXT_BYTES + 1))
    # the worst JSON escaping of a text at the limit (every byte a quote or newline) still fits the envelope
    escaped = len(json.dumps('"' * MAX_TEXT_BYTES, ensure_ascii=False)) + 512
    assert 4 * -(-escaped // 3) <= MAX_CIPHERTEXT_CHARS


@pytest.mark.parametrize(("seconds", "words"), [
    (31_622_400, "366 days"), (86400, "1 day"), (7200, "2 hours"), (60, "1 minute"), (90, "90 seconds"),
    (1, "1 second"),
])
def test_duration_words(seconds: int, words: str) -> None:
    assert duration_words(seconds) == words
