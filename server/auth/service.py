"""Logins, device sessions, refresh-token rotation and revocation."""

import hashlib
import secrets
from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from melo_protocol.wire import ErrorCode, LoginRequest, SessionOut, TokenResponse, UserPublic
from melo_protocol.wire.accounts import normalize_username
from server.config import Settings
from server.core.errors import ApiError
from server.core.jwt_keys import JwtKeyRing
from server.core.passwords import Passwords
from server.core.ratelimit import RateLimiter
from server.core.revocation import RevocationStore
from server.db.models import DeviceSession, RefreshToken, User
from server.db.types import utcnow


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def user_public(user: User) -> UserPublic:
    return UserPublic(
        id=user.id,
        username=user.username,
        display_name=user.display_name,
        bio=user.bio,
        avatar_etag=user.avatar_etag,
        created_at=user.created_at,
    )


def session_out(row: DeviceSession, current_sid: str | None = None) -> SessionOut:
    return SessionOut(
        id=row.id,
        device_id=row.device_id,
        device_name=row.device_name,
        created_at=row.created_at,
        last_seen_at=row.last_seen_at,
        ip=row.ip,
        user_agent=row.user_agent,
        current=row.id == current_sid,
    )


def account_closed(user: User | None, status: int | None = None) -> ApiError | None:
    """The refusal for a banned or deactivated account (None if it may sign in): 401 for a token or session
    of it, so clients tell the user why rather than to log in again; 403 (``status``) when logging in."""
    if user is not None and user.banned_at is not None:
        return ApiError(ErrorCode.ACCOUNT_BANNED, "this account is banned", status=status)
    if user is not None and user.deactivated_at is not None:
        return ApiError(ErrorCode.ACCOUNT_DEACTIVATED, "this account is deactivated", status=status)
    return None


def check_user_may_sign_in(user: User) -> None:
    if (refusal := account_closed(user, status=403)) is not None:
        raise refusal


async def _issue(user: User, session: DeviceSession, refresh_token: str, *, keys: JwtKeyRing) -> TokenResponse:
    access = await keys.sign_access(user_id=user.id, session_id=session.id, device_id=session.device_id)
    return TokenResponse(
        access_token=access,
        refresh_token=refresh_token,
        expires_in=keys.access_ttl_s,
        session_id=session.id,
        device_id=session.device_id,
        user=user_public(user),
    )


async def open_session(
    db: AsyncSession, *, user: User, device_name: str | None, ip: str, user_agent: str | None, keys: JwtKeyRing
) -> TokenResponse:
    """A new device session with its first refresh token; commits."""
    now = utcnow()
    session = DeviceSession(
        id=secrets.token_hex(16),
        user_id=user.id,
        device_id="D" + secrets.token_hex(8).upper(),
        device_name=_clean_label(device_name),
        created_at=now,
        last_seen_at=now,
        ip=ip[:64],
        user_agent=(user_agent or "")[:256] or None,
    )
    refresh = secrets.token_urlsafe(32)
    db.add(session)
    await db.flush()
    db.add(RefreshToken(token_hash=hash_refresh_token(refresh), session_id=session.id, created_at=now))
    user.last_seen_at = now
    await db.commit()
    return await _issue(user, session, refresh, keys=keys)


def _clean_label(value: str | None) -> str | None:
    if not value:
        return None
    cleaned = "".join(c for c in value if c.isprintable()).strip()
    return cleaned[:64] or None


async def login(
    db: AsyncSession,
    body: LoginRequest,
    *,
    ip: str,
    user_agent: str | None,
    settings: Settings,
    limiter: RateLimiter,
    passwords: Passwords,
    keys: JwtKeyRing,
) -> TokenResponse:
    # Counted apart: every attempt per IP; only failures per account, so that someone hammering an
    # account from elsewhere cannot lock its owner out of a device that already holds a refresh token.
    await limiter.hit(settings.rate_login_ip, "login-ip", ip)
    name = normalize_username(body.username) or ""
    await limiter.check(settings.rate_login_account, "login-account", name or "-invalid-")
    user = (await db.scalars(select(User).where(User.username == name))).first() if name else None
    if not await passwords.verify(user.password_hash if user else None, body.password):
        await limiter.hit(settings.rate_login_account, "login-account", name or "-invalid-")
        raise ApiError(ErrorCode.INVALID_CREDENTIALS, "wrong username or password")
    assert user is not None
    check_user_may_sign_in(user)
    return await open_session(db, user=user, device_name=body.device_name, ip=ip, user_agent=user_agent, keys=keys)


async def refresh(
    db: AsyncSession, token: str, *, ip: str, user_agent: str | None, keys: JwtKeyRing, revocations: RevocationStore
) -> TokenResponse:
    token_hash = hash_refresh_token(token)
    row = await db.get(RefreshToken, token_hash)
    invalid = ApiError(ErrorCode.INVALID_TOKEN, "unknown refresh token")
    if row is None:
        raise invalid
    session_id = row.session_id  # plain value: a rollback below expires the loaded rows
    session = await db.get(DeviceSession, session_id)
    if session is None:
        raise invalid
    if session.revoked_at is not None:
        # a ban or deactivation revokes every session: name that, not the revocation it caused
        raise account_closed(await db.get(User, session.user_id)) or ApiError(
            ErrorCode.SESSION_REVOKED, "this session has been revoked"
        )
    now = utcnow()
    # Spend atomically: of N concurrent refreshes with one token exactly one matches this row.
    spent = await db.execute(
        update(RefreshToken)
        .where(RefreshToken.token_hash == token_hash, RefreshToken.spent_at.is_(None))
        .values(spent_at=now)
    )
    if spent.rowcount != 1:  # type: ignore[attr-defined]
        await db.rollback()
        # A spent token presented again means it leaked or was copied: end the whole session.
        await revoke_sessions(db, [session_id], reason="refresh_token_reused", revocations=revocations)
        raise ApiError(
            ErrorCode.REFRESH_TOKEN_REUSED, "this refresh token was already used; the session has been revoked"
        )
    user = await db.get(User, session.user_id)
    if user is None:
        raise invalid
    check_user_may_sign_in(user)
    # Lock order (refresh token, then session, then insert) keeps concurrent refreshes deadlock-free.
    await db.execute(
        update(DeviceSession)
        .where(DeviceSession.id == session.id)
        .values(last_seen_at=now, ip=ip[:64], user_agent=(user_agent or "")[:256] or None)
    )
    new_token = secrets.token_urlsafe(32)
    db.add(RefreshToken(token_hash=hash_refresh_token(new_token), session_id=session.id, created_at=now))
    await db.commit()
    return await _issue(user, session, new_token, keys=keys)


async def revoke_sessions(
    db: AsyncSession, session_ids: Sequence[str], *, reason: str, revocations: RevocationStore
) -> int:
    """Revoke sessions (commits); takes effect at once on every worker through the revocation store."""
    if not session_ids:
        return 0
    result = await db.execute(
        update(DeviceSession)
        .where(DeviceSession.id.in_(list(session_ids)), DeviceSession.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoke_reason=reason)
    )
    await db.commit()
    await revocations.revoke(session_ids)
    return int(result.rowcount)  # type: ignore[attr-defined]


async def active_sessions(db: AsyncSession, user_id: int) -> list[DeviceSession]:
    rows = await db.scalars(
        select(DeviceSession)
        .where(DeviceSession.user_id == user_id, DeviceSession.revoked_at.is_(None))
        .order_by(DeviceSession.created_at)
    )
    return list(rows.all())


async def revoke_user_sessions(
    db: AsyncSession, user_id: int, *, reason: str, keep: str | None = None, revocations: RevocationStore
) -> int:
    ids = [s.id for s in await active_sessions(db, user_id) if s.id != keep]
    return await revoke_sessions(db, ids, reason=reason, revocations=revocations)


async def load_recent_revocations(
    *, sessions: async_sessionmaker[AsyncSession], revocations: RevocationStore, access_ttl_s: int
) -> None:
    """Seed the in-process store at start so a restart does not revive revoked access tokens."""
    from datetime import timedelta

    since = utcnow() - timedelta(seconds=access_ttl_s + 60)
    async with sessions() as db:
        ids = (await db.scalars(select(DeviceSession.id).where(DeviceSession.revoked_at >= since))).all()
    if ids:
        await revocations.revoke(ids)
