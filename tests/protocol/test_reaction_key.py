"""A reaction key is one emoji (wire-level rule, shared by the server, the SDK and the WebSocket command)."""

import emoji
import pytest
from pydantic import TypeAdapter, ValidationError

from melo_protocol.client import api
from melo_protocol.client.errors import BadRequest
from melo_protocol.client.transport import build_request
from melo_protocol.wire.chats import ReactionKey

KEY = TypeAdapter(ReactionKey)


@pytest.mark.parametrize("value", ["👍", "👍🏽", "👩🏽‍💻", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "1️⃣", "#️⃣", "❤️", "🫠", "©️"])
def test_one_emoji_is_a_reaction(value: str) -> None:
    assert KEY.validate_python(value) == value


@pytest.mark.parametrize("value", ["", "notanemoji", "a", "+1", ":thumbsup:", "👍👍", "👍 ", " 👍", "🏻", "🇫",
                                   "\u200d", "\ufe0f", "1", "*", "👍" * 40])
def test_anything_else_is_refused(value: str) -> None:
    with pytest.raises(ValidationError, match="a reaction is one emoji"):
        KEY.validate_python(value)


@pytest.mark.parametrize(("given", "stored"), [("❤", "❤️"), ("☺", "☺️"), ("©", "©️"), ("↔", "↔️")])
def test_unqualified_forms_become_the_fully_qualified_one(given: str, stored: str) -> None:
    assert KEY.validate_python(given) == stored


def test_every_emoji_of_the_data_set_is_accepted() -> None:
    fully = emoji.STATUS["fully_qualified"]
    for value, data in emoji.EMOJI_DATA.items():
        if data["status"] == emoji.STATUS["component"]:
            continue
        key = KEY.validate_python(value)
        assert emoji.EMOJI_DATA[key]["status"] == fully, value
        assert KEY.validate_python(key) == key


def test_the_sdk_refuses_before_sending_and_says_why() -> None:
    request = build_request(api.react, 3, 4, emoji="❤")
    assert request.path == "/v1/chats/3/messages/4/reactions/%E2%9D%A4%EF%B8%8F"
    with pytest.raises(BadRequest) as info:
        build_request(api.react, 3, 4, emoji="notanemoji")
    assert info.value.code == "validation_error"
    assert str(info.value) == "a reaction is one emoji, e.g. 👍 (validation_error)"
    assert "notanemoji" not in str(info.value)  # values never reach messages
