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


class ErrorBody(Response):
    # A plain string to clients (a newer server may add codes); the schema lists the codes of this version.
    code: str = Field(json_schema_extra={"enum": [c.value for c in ErrorCode]})
    message: str = Field(description="for people; may change, do not parse")
    details: dict[str, Any] = Field(default_factory=dict, description="machine-readable context of this code")


class ErrorResponse(Response):
    error: ErrorBody
