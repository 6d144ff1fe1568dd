"""The one error shape: ``{"error": {"code": ..., "message": ..., "details": {...}}}``."""

from enum import StrEnum
from typing import Any

from pydantic import Field

from melo_protocol.wire.base import Response


class ErrorCode(StrEnum):
    # generic
    BAD_REQUEST = "bad_request"
    VALIDATION_ERROR = "validation_error"
    MALFORMED_JSON = "malformed_json"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    RATE_LIMITED = "rate_limited"
    INTERNAL = "internal_error"
    UNAVAILABLE = "service_unavailable"
    # auth
    UNAUTHENTICATED = "unauthenticated"
    INVALID_TOKEN = "invalid_token"
    TOKEN_EXPIRED = "token_expired"
    SESSION_REVOKED = "session_revoked"
    REFRESH_TOKEN_REUSED = "refresh_token_reused"
    INVALID_CREDENTIALS = "invalid_credentials"
    FORBIDDEN = "forbidden"
    ADMIN_REQUIRED = "admin_required"
    ACCOUNT_BANNED = "account_banned"
    ACCOUNT_DEACTIVATED = "account_deactivated"
    # accounts
    INVALID_USERNAME = "invalid_username"
    USERNAME_TAKEN = "username_taken"
    WEAK_PASSWORD = "weak_password"
    REGISTRATION_CLOSED = "registration_closed"
    REGISTRATION_TOKEN_REQUIRED = "registration_token_required"
    REGISTRATION_TOKEN_INVALID = "registration_token_invalid"
    USER_NOT_FOUND = "user_not_found"
    SESSION_NOT_FOUND = "session_not_found"
    INVALID_IMAGE = "invalid_image"
    AVATAR_NOT_SET = "avatar_not_set"
    TOKEN_NOT_FOUND = "registration_token_not_found"
    CANNOT_TARGET_SELF = "cannot_target_self"


class ErrorBody(Response):
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorResponse(Response):
    error: ErrorBody
