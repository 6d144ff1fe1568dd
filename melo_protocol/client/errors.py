"""The SDK's one exception hierarchy, and the pure mapping from an HTTP error reply to it.

Every client failure is a ``MeloError``: callers (CLI, TUI) translate these once, into exit codes or
notifications. Codes are the server's ``{"error": {"code", "message", "details"}}`` codes
(``melo_protocol.wire.ErrorCode``); an unknown code still maps by HTTP status.
"""

import json
from collections.abc import Mapping
from typing import Any

from melo_protocol.wire import ErrorCode
from melo_protocol.wire.errors import http_status


class MeloError(Exception):
    """Base of every error the SDK raises."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ServerUnreachable(MeloError):
    """Connection refused, timeout, or the server answered 5xx (``status`` is then set)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NotLoggedIn(MeloError):
    """No stored credentials for this profile and server."""


class CallError(MeloError):
    """A call could not be placed or driven (another call is active, the callee is unreachable, …)."""


class E2EError(MeloError):
    """An end-to-end encryption problem the user must look at (trust, keys, local store)."""


class ProfileInUse(MeloError):
    """Another process has this profile's device open (its crypto store is locked to one process)."""


class StreamClosed(MeloError):
    """The live stream was closed by the client."""


class ClientError(MeloError):
    """A request refused on this side, with a code like the server's (``chat_not_found`` for a chat name
    that matches none of yours, ``ambiguous_chat``): no server reply to quote, but the same shape."""

    def __init__(self, code: str, message: str, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.details: dict[str, Any] = dict(details or {})


class ControlRequestRefused(ClientError):
    """The holder of a profile (its control socket) could not run the request as sent (unreadable, an
    unknown action, bad parameters): a version mismatch between the two processes or a bug, never the
    user's data. The CLI exits 2 (usage)."""


class ApiError(MeloError):
    """The server refused the request with a 4xx error body."""

    def __init__(
        self, status: int, code: str, message: str, details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.details: dict[str, Any] = dict(details or {})

    def __str__(self) -> str:
        return f"{self.message} ({self.code})"


class BadRequest(ApiError):
    """400, 413, 415, 422: the request itself is wrong."""


class NotAuthenticated(ApiError):
    """401: missing, invalid or expired access token (refreshing may help)."""


class InvalidCredentials(ApiError):
    """401 on login: wrong username or password. A user error, not a session problem."""


class SessionRevoked(ApiError):
    """The session is over: revoked, refresh token reused, account banned or deactivated."""


class Forbidden(ApiError):
    """403: authenticated but not allowed."""


class NotFound(ApiError):
    """404."""


class Conflict(ApiError):
    """409, e.g. a taken username."""


class RateLimited(ApiError):
    """429; ``retry_after`` is seconds to wait, when the server said."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Mapping[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(status, code, message, details)
        self.retry_after = retry_after


NOT_AUTHENTICATED_CODES = frozenset(
    {ErrorCode.INVALID_TOKEN, ErrorCode.TOKEN_EXPIRED, ErrorCode.UNAUTHENTICATED}
)
SESSION_OVER_CODES = frozenset(
    {
        ErrorCode.SESSION_REVOKED,
        ErrorCode.REFRESH_TOKEN_REUSED,
        ErrorCode.ACCOUNT_BANNED,
        ErrorCode.ACCOUNT_DEACTIVATED,
    }
)
# A 401 with one of these means "refresh the access token and try once more".
REFRESHABLE_CODES = frozenset({ErrorCode.INVALID_TOKEN, ErrorCode.TOKEN_EXPIRED})

_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    413: BadRequest,
    415: BadRequest,
    422: BadRequest,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
}


def parse_error_body(status: int, body: bytes) -> tuple[str, str, dict[str, Any]]:
    """(code, message, details) from an error reply; tolerant of bodies a proxy may have written."""
    try:
        doc = json.loads(body)
        err = doc["error"]
        code = str(err["code"])
        message = str(err.get("message") or code)
        details = err.get("details") or {}
        return code, message, details if isinstance(details, dict) else {}
    except (ValueError, KeyError, TypeError):
        return f"http_{status}", f"HTTP {status}", {}


def _retry_after(details: Mapping[str, Any], headers: Mapping[str, str]) -> float | None:
    for raw in (details.get("retry_after"), headers.get("retry-after")):
        if raw is None:
            continue
        try:
            return float(raw)
        except (TypeError, ValueError):
            continue
    return None


def error_from_response(status: int, body: bytes, headers: Mapping[str, str] | None = None) -> MeloError:
    """The exception for an HTTP error reply (status >= 400). Pure: bytes in, exception out."""
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    if status >= 500:
        code, message, _ = parse_error_body(status, body)
        return ServerUnreachable(f"server error {status}: {message}", status=status)
    code, message, details = parse_error_body(status, body)
    # A 403 account_banned on login is a refusal (Forbidden); a 401 one ends a live session.
    if code in SESSION_OVER_CODES and status == 401:
        return SessionRevoked(status, code, message, details)
    if status == 401:
        if code == ErrorCode.INVALID_CREDENTIALS:
            return InvalidCredentials(status, code, message, details)
        return NotAuthenticated(status, code, message, details)
    if status == 429:
        return RateLimited(status, code, message, details, retry_after=_retry_after(details, headers))
    if code == ErrorCode.VALIDATION_ERROR and isinstance(details.get("errors"), list):
        from melo_protocol.client.validation import describe_errors

        errors = [e for e in details["errors"] if isinstance(e, dict)]
        message = describe_errors(errors) if errors else message  # "invalid request" → what and why
    return _BY_STATUS.get(status, BadRequest)(status, code, message, details)


def error_from_code(code: str, message: str, details: dict[str, Any] | None = None) -> MeloError:
    """The exception for a WebSocket error frame, which carries a code but no HTTP status: the code's status
    from the protocol's one table (a code of a newer server: 404 for ``*_not_found``, else 400)."""
    status = http_status(code) or (404 if code.endswith("not_found") else 400)
    body = json.dumps({"error": {"code": code, "message": message, "details": details or {}}}).encode()
    return error_from_response(status, body, {})


__all__ = [
    "ApiError",
    "BadRequest",
    "CallError",
    "ClientError",
    "Conflict",
    "ControlRequestRefused",
    "E2EError",
    "Forbidden",
    "InvalidCredentials",
    "MeloError",
    "NotAuthenticated",
    "NotFound",
    "NotLoggedIn",
    "ProfileInUse",
    "RateLimited",
    "ServerUnreachable",
    "SessionRevoked",
    "StreamClosed",
    "error_from_code",
    "error_from_response",
    "parse_error_body",
]
