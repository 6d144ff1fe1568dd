"""Accounts, authentication and sessions: request and response bodies."""

import re
from datetime import datetime

from pydantic import Field

from melo_protocol.wire.base import Request, Response

USERNAME_PATTERN = r"[a-z0-9_.-]{3,32}"
_USERNAME_RE = re.compile(USERNAME_PATTERN)
PASSWORD_MIN_LENGTH = 10
PASSWORD_MAX_LENGTH = 1024
BIO_MAX_LENGTH = 280
DISPLAY_NAME_MAX_LENGTH = 64


def normalize_username(raw: str) -> str | None:
    """Return the canonical (lower-case ASCII) username, or None when it is not acceptable.

    ASCII is checked *before* lower-casing: ``str.lower`` maps some non-ASCII letters to ASCII
    (KELVIN SIGN -> "k"), which would let a look-alike name collide with or impersonate another.
    """
    if not raw.isascii():
        return None
    name = raw.lower()
    return name if _USERNAME_RE.fullmatch(name) else None


class RegisterRequest(Request):
    username: str = Field(max_length=64)
    password: str = Field(max_length=PASSWORD_MAX_LENGTH)
    registration_token: str | None = Field(default=None, max_length=128)
    device_name: str | None = Field(default=None, max_length=64)


class LoginRequest(Request):
    username: str = Field(max_length=64)
    password: str = Field(max_length=PASSWORD_MAX_LENGTH)
    device_name: str | None = Field(default=None, max_length=64)


class RefreshRequest(Request):
    refresh_token: str = Field(max_length=256)


class PasswordChangeRequest(Request):
    current_password: str = Field(max_length=PASSWORD_MAX_LENGTH)
    new_password: str = Field(max_length=PASSWORD_MAX_LENGTH)


class ProfileUpdate(Request):
    display_name: str | None = Field(default=None, max_length=DISPLAY_NAME_MAX_LENGTH)
    bio: str | None = Field(default=None, max_length=BIO_MAX_LENGTH)


class UserPublic(Response):
    id: int
    username: str
    display_name: str | None = None
    bio: str | None = None
    avatar_etag: str | None = None
    created_at: datetime


class AccountOut(UserPublic):
    is_admin: bool = False
    session_id: str
    device_id: str


class TokenResponse(Response):
    access_token: str
    refresh_token: str
    token_type: str = "Bearer"
    expires_in: int
    session_id: str
    device_id: str
    user: UserPublic


class SessionOut(Response):
    id: str
    device_id: str
    device_name: str | None = None
    created_at: datetime
    last_seen_at: datetime | None = None
    ip: str | None = None
    user_agent: str | None = None
    current: bool = False


class SessionList(Response):
    sessions: list[SessionOut]
