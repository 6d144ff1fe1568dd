"""The one table of each error code's HTTP status (melo_protocol.wire.errors), as the SDK reads it."""

from melo_protocol.client.errors import BadRequest, Conflict, NotFound, SessionRevoked, error_from_code
from melo_protocol.wire.errors import ALSO_ANSWERED, HTTP_STATUS, ErrorCode, http_status


def test_every_code_has_one_status() -> None:
    assert set(HTTP_STATUS) == set(ErrorCode)
    assert all(400 <= s <= 599 for s in HTTP_STATUS.values())
    for code, others in ALSO_ANSWERED.items():
        assert others and HTTP_STATUS[code] not in others, code
    assert http_status("chat_not_found") == 404
    assert http_status("a_code_of_a_newer_server") is None


def test_an_error_frame_is_read_with_its_codes_status() -> None:
    for code in ErrorCode:
        err = error_from_code(code.value, "m")
        assert getattr(err, "status", None) == HTTP_STATUS[code], code
    assert isinstance(error_from_code("recipients_changed", "m"), Conflict)
    assert isinstance(error_from_code("account_banned", "m"), SessionRevoked)
    assert isinstance(error_from_code("validation_error", "m"), BadRequest)


def test_a_code_of_a_newer_server_maps_by_its_name() -> None:
    err = error_from_code("widget_not_found", "m")
    assert isinstance(err, NotFound) and err.status == 404
    err = error_from_code("widget_exploded", "m")
    assert isinstance(err, BadRequest) and err.status == 400
