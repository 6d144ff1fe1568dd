"""The SDK's socket commands are built from the wire models the server parses them with (no socket here)."""

import json

import pytest

from melo_protocol.client.errors import BadRequest
from melo_protocol.client.stream import encode_command
from melo_protocol.wire.realtime import AuthCmd, PingCmd, TypingCmd, client_command_adapter


@pytest.mark.parametrize(
    ("op", "fields", "model"),
    [
        ("auth", {"token": "t0k", "cursor": {1: 5, 22: 0}}, AuthCmd),
        ("auth", {"token": "t0k", "cursor": None}, AuthCmd),
        ("typing", {"id": "r1", "chat_id": 7, "typing": False}, TypingCmd),
        ("received", {"id": "r2", "chat_id": 7, "seq": 41}, None),
        ("to_device_ack", {"id": "r3", "up_to": 9}, None),
        ("ping", {}, PingCmd),
    ],
)
def test_a_command_carries_exactly_the_fields_given_and_the_server_reads_it_back(
    op: str, fields: dict[str, object], model: type | None
) -> None:
    text = encode_command(op, **fields)
    sent = json.loads(text)
    # the same keys as the hand-built dict had (JSON object keys are strings), nothing added
    assert sent == json.loads(json.dumps({"op": op, **fields}))
    parsed = client_command_adapter.validate_json(text)
    assert parsed.op == op
    if model is not None:
        assert isinstance(parsed, model)


def test_text_goes_out_as_utf8_not_escaped() -> None:
    assert '"token":"jéton"' in encode_command("auth", token="jéton")


@pytest.mark.parametrize(
    ("op", "fields", "named"),
    [
        ("received", {"chat_id": 0, "seq": 1}, ["chat_id"]),  # ids start at 1
        ("to_device_ack", {"up_to": -1}, ["up_to"]),
        ("typing", {"chat_id": 1, "typing": True, "colour": "red"}, ["colour"]),  # no such field
        ("shout", {}, ["command"]),  # no such command
    ],
)
def test_a_value_the_model_refuses_is_bad_request_before_anything_is_sent(
    op: str, fields: dict[str, object], named: list[str]
) -> None:
    with pytest.raises(BadRequest) as caught:
        encode_command(op, **fields)
    assert caught.value.code == "validation_error"
    assert caught.value.details == {"fields": named}
    assert "red" not in str(caught.value.details)  # field names, never values
