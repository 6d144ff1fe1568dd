"""Admin API bodies: users, bans, registration, keys, stats and the audit log."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field

from melo_protocol.wire.accounts import PASSWORD_MAX_LENGTH, SessionOut
from melo_protocol.wire.base import Request, Response


class RegistrationMode(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    TOKEN = "token"


class AdminUserSummary(Response):
    id: int
    username: str
    display_name: str | None = None
    is_admin: bool
    banned: bool
    deactivated: bool
    created_at: datetime
    last_seen_at: datetime | None = None


class AdminUserList(Response):
    users: list[AdminUserSummary]


class AdminUserDetail(AdminUserSummary):
    ban_reason: str | None = None
    sessions: list[SessionOut]


class BanRequest(Request):
    reason: str | None = Field(default=None, max_length=500)


class AdminPasswordReset(Request):
    """Without ``new_password`` the server makes one and returns it once."""

    new_password: str | None = Field(default=None, max_length=PASSWORD_MAX_LENGTH)


class AdminPasswordResetOut(Response):
    username: str
    temporary_password: str | None = None
    sessions_revoked: int


class RegistrationModeBody(Request):
    mode: RegistrationMode


class RegistrationTokenCreate(Request):
    expires_in_seconds: int | None = Field(default=None, ge=60, le=366 * 86400)
    max_uses: int | None = Field(default=None, ge=1, le=1_000_000)


class RegistrationTokenOut(Response):
    token: str
    created_at: datetime
    expires_at: datetime | None = None
    max_uses: int | None = None
    uses: int
    revoked: bool


class RegistrationTokenList(Response):
    tokens: list[RegistrationTokenOut]


class StatsOut(Response):
    users: int
    active_users: int
    admins: int
    banned_users: int
    sessions: int
    messages: int


class AuditEntry(Response):
    id: int
    actor: str | None
    action: str
    target: str | None
    outcome: str
    details: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime


class AuditList(Response):
    entries: list[AuditEntry]


class KeyRotateRequest(Request):
    jwt: bool = True
    # a new at-rest data key; older rows are re-encrypted in the background, reads never fail meanwhile
    data: bool = False


class AdminKeyOut(Response):
    kid: str
    kind: str
    created_at: datetime
    # from when the key is used; None: published and not yet scheduled (a JWT key being rotated in)
    activates_at: datetime | None = None
    # past: no longer used nor published; future: still verifies tokens it signed until then
    retired_at: datetime | None = None
    active: bool  # the key signing (JWT) or sealing (data) now


class AdminKeyList(Response):
    keys: list[AdminKeyOut]


class KeyRotateResult(Response):
    rotated: list[AdminKeyOut]
    # rows still sealed under an older data key when the answer was sent (re-encryption continues)
    reencrypt_pending: int = 0
