"""Error replies in, exceptions out: the SDK's mapping, without a network."""

import json

import pytest

from melo_protocol.client import api
from melo_protocol.client.errors import (
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    InvalidCredentials,
    MeloError,
    NotAuthenticated,
    NotFound,
    RateLimited,
    ServerUnreachable,
    SessionRevoked,
    error_from_response,
)


def body(code: str, message: str = "m", **details: object) -> bytes:
    return json.dumps({"error": {"code": code, "message": message, "details": details}}).encode()


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (401, "invalid_token", NotAuthenticated),
        (401, "token_expired", NotAuthenticated),
        (401, "unauthenticated", NotAuthenticated),
        (401, "session_revoked", SessionRevoked),
        (401, "refresh_token_reused", SessionRevoked),
        (401, "account_banned", SessionRevoked),
        (401, "account_deactivated", SessionRevoked),
        (401, "invalid_credentials", InvalidCredentials),
        (403, "admin_required", Forbidden),
        (403, "account_banned", Forbidden),  # refused at login: not a live session ending
        (404, "session_not_found", NotFound),
        (409, "username_taken", Conflict),
        (400, "weak_password", BadRequest),
        (413, "payload_too_large", BadRequest),
        (415, "unsupported_media_type", BadRequest),
        (422, "validation_error", BadRequest),
        (418, "something_new", BadRequest),
    ],
)
def test_status_and_code_pick_the_exception(status: int, code: str, cls: type[ApiError]) -> None:
    err = error_from_response(status, body(code, "why", field="x"))
    assert type(err) is cls
    assert isinstance(err, ApiError) and isinstance(err, MeloError)
    assert (err.status, err.code, err.message, err.details) == (status, code, "why", {"field": "x"})


def test_rate_limited_carries_retry_after() -> None:
    err = error_from_response(429, body("rate_limited", retry_after=7), {"Retry-After": "9"})
    assert isinstance(err, RateLimited) and err.retry_after == 7
    from_header = error_from_response(429, body("rate_limited"), {"Retry-After": "9"})
    assert isinstance(from_header, RateLimited) and from_header.retry_after == 9


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_unreachable(status: int) -> None:
    err = error_from_response(status, b"<html>bad gateway</html>")
    assert isinstance(err, ServerUnreachable) and err.status == status


def test_a_body_that_is_not_our_error_shape_still_maps_by_status() -> None:
    err = error_from_response(404, b"not json")
    assert isinstance(err, NotFound) and err.code == "http_404"


def test_request_builders_escape_path_segments_and_hide_passwords() -> None:
    req = api.get_user("../admin/users")
    assert req.path == "/v1/users/..%2Fadmin%2Fusers"
    login = api.login("alice", "hunter2hunter2")
    assert login.json == {"username": "alice", "password": "hunter2hunter2"}
    assert "hunter2" not in repr(login)
    assert not login.auth
    assert api.admin_audit(10, "users.ban").params == {"limit": 10, "action": "users.ban"}
