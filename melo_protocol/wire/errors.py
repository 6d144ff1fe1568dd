"""The one error shape: ``{"error": {"code": ..., "message": ..., "details": {...}}}``, its codes, and
the one table of each code's HTTP status (``HTTP_STATUS``), read by the server to answer and by the SDK to
classify an error frame, which carries a code but no status."""

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
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
    # chats and messages
    CHAT_NOT_FOUND = "chat_not_found"
    MESSAGE_NOT_FOUND = "message_not_found"
    CHAT_ADMIN_REQUIRED = "chat_admin_required"
    CHANNEL_READ_ONLY = "channel_read_only"
    SLOW_MODE = "slow_mode"
    NOT_AUTHOR = "not_author"
    E2E_REQUIRED = "e2e_required"
    E2E_NOT_ALLOWED = "e2e_not_allowed"
    INVITE_INVALID = "invite_invalid"
    INVITE_NOT_FOUND = "invite_not_found"
    LAST_OWNER = "last_owner"
    ALREADY_MEMBER = "already_member"
    NOT_A_MEMBER = "not_a_member"
    GROUP_FULL = "group_full"
    CANNOT_DM_SELF = "cannot_dm_self"
    WRONG_CHAT_KIND = "wrong_chat_kind"
    REPLY_NOT_FOUND = "reply_not_found"
    # end-to-end keys
    INVALID_KEYS = "invalid_keys"
    # an E2E message encrypted for another set of member devices than the chat has now (409)
    RECIPIENTS_CHANGED = "recipients_changed"


_HTTP_STATUS: dict[ErrorCode, int] = {
    # generic
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.VALIDATION_ERROR: 422,
    ErrorCode.MALFORMED_JSON: 400,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.INTERNAL: 500,
    ErrorCode.UNAVAILABLE: 503,
    # auth
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.INVALID_TOKEN: 401,
    ErrorCode.TOKEN_EXPIRED: 401,
    ErrorCode.SESSION_REVOKED: 401,
    ErrorCode.REFRESH_TOKEN_REUSED: 401,
    ErrorCode.INVALID_CREDENTIALS: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.ADMIN_REQUIRED: 403,
    ErrorCode.ACCOUNT_BANNED: 401,
    ErrorCode.ACCOUNT_DEACTIVATED: 401,
    # accounts
    ErrorCode.INVALID_USERNAME: 400,
    ErrorCode.USERNAME_TAKEN: 409,
    ErrorCode.WEAK_PASSWORD: 400,
    ErrorCode.REGISTRATION_CLOSED: 403,
    ErrorCode.REGISTRATION_TOKEN_REQUIRED: 403,
    ErrorCode.REGISTRATION_TOKEN_INVALID: 403,
    ErrorCode.USER_NOT_FOUND: 404,
    ErrorCode.SESSION_NOT_FOUND: 404,
    ErrorCode.INVALID_IMAGE: 400,
    ErrorCode.AVATAR_NOT_SET: 404,
    ErrorCode.TOKEN_NOT_FOUND: 404,
    ErrorCode.CANNOT_TARGET_SELF: 400,
    # chats and messages
    ErrorCode.CHAT_NOT_FOUND: 404,
    ErrorCode.MESSAGE_NOT_FOUND: 404,
    ErrorCode.CHAT_ADMIN_REQUIRED: 403,
    ErrorCode.CHANNEL_READ_ONLY: 403,
    ErrorCode.SLOW_MODE: 429,
    ErrorCode.NOT_AUTHOR: 403,
    ErrorCode.E2E_REQUIRED: 400,
    ErrorCode.E2E_NOT_ALLOWED: 400,
    ErrorCode.INVITE_INVALID: 404,
    ErrorCode.INVITE_NOT_FOUND: 404,
    ErrorCode.LAST_OWNER: 409,
    ErrorCode.ALREADY_MEMBER: 409,
    ErrorCode.NOT_A_MEMBER: 404,
    ErrorCode.GROUP_FULL: 409,
    ErrorCode.CANNOT_DM_SELF: 400,
    ErrorCode.WRONG_CHAT_KIND: 409,
    ErrorCode.REPLY_NOT_FOUND: 400,
    # end-to-end keys
    ErrorCode.INVALID_KEYS: 400,
    ErrorCode.RECIPIENTS_CHANGED: 409,
}
HTTP_STATUS: Mapping[ErrorCode, int] = MappingProxyType(_HTTP_STATUS)
"""Each code's one HTTP status."""

_ALSO_ANSWERED: dict[ErrorCode, frozenset[int]] = {
    ErrorCode.ACCOUNT_BANNED: frozenset({403}),  # at login: a refusal, not a session ending
    ErrorCode.ACCOUNT_DEACTIVATED: frozenset({403}),  # at login
    ErrorCode.INVALID_CREDENTIALS: frozenset({403}),  # a wrong current password when changing it
    ErrorCode.GROUP_FULL: frozenset({400}),  # creating a chat with too many members
    ErrorCode.INVALID_KEYS: frozenset({409}),  # other identity keys for a device, or a concurrent upload
    # 400: a service's own check of a value (a time, an endpoint); 409: a per-user or per-device limit
    # reached, or a scheduled txn_id taken
    ErrorCode.VALIDATION_ERROR: frozenset({400, 409}),
}
ALSO_ANSWERED: Mapping[ErrorCode, frozenset[int]] = MappingProxyType(_ALSO_ANSWERED)
"""The statuses some routes answer a code with besides ``HTTP_STATUS``'s: kept as they were when the table
came; each a candidate for a code of its own."""


def http_status(code: str) -> int | None:
    """The HTTP status of a known code (None for a code this version does not know)."""
    try:
        return HTTP_STATUS[ErrorCode(code)]
    except ValueError:
        return None


class ErrorBody(Response):
    # A plain string to clients (a newer server may add codes); the schema lists the codes of this version.
    code: str = Field(json_schema_extra={"enum": [c.value for c in ErrorCode]})
    message: str = Field(description="for people; may change, do not parse")
    details: dict[str, Any] = Field(default_factory=dict, description="machine-readable context of this code")


class ErrorResponse(Response):
    error: ErrorBody
