"""Admin actions. Every one is written to the audit log with its outcome, failures included."""

import json
import secrets
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from melo_protocol.wire import (
    AdminKeyOut,
    AdminUserDetail,
    AdminUserSummary,
    AuditEntry,
    ErrorCode,
    RegistrationTokenCreate,
    RegistrationTokenOut,
    StatsOut,
)
from server.accounts.service import check_text, plausible_registration_token
from server.auth import service as auth_service
from server.core.caller import Caller
from server.core.errors import ApiError
from server.core.jwt_keys import signing_kid
from server.core.passwords import Passwords
from server.core.revocation import RevocationStore
from server.core.secrets import shareable_code
from server.db.models import AuditLog, DeviceSession, Message, RegistrationToken, SigningKey, User
from server.db.types import utcnow

T = TypeVar("T")
# The actor of commands run on the server host (``melo-server create-admin``, ``keys rotate``): no user
# id. A user may be called "host" too; their entries carry their user id, the host's none.
HOST_ACTOR = "host"


async def audited(
    caller: Caller | None,
    action: str,
    target: str | None,
    fn: Callable[[], Awaitable[T]],
    details: dict[str, Any] | None = None,
    *,
    sessions: async_sessionmaker[AsyncSession],
) -> T:
    """Run an admin action and record it (actor, action, target, time, outcome) in its own transaction.

    ``caller`` None: a host command. ``details`` is written after the action, so it may fill them in.
    """
    outcome = "ok"
    try:
        return await fn()
    except ApiError as exc:
        outcome = exc.code
        raise
    except Exception:
        outcome = "error"
        raise
    finally:
        async with sessions() as audit_db:
            audit_db.add(
                AuditLog(
                    actor_id=caller.user.id if caller is not None else None,
                    actor_username=caller.user.username if caller is not None else HOST_ACTOR,
                    action=action,
                    target=target[:128] if target else None,
                    outcome=outcome,
                    details=json.dumps(details or {}),
                    created_at=utcnow(),
                )
            )
            await audit_db.commit()


def summary(user: User) -> AdminUserSummary:
    return AdminUserSummary(
        id=user.id,
        username=user.username,
        display_name=user.display_name,
        is_admin=user.is_admin,
        banned=user.banned_at is not None,
        deactivated=user.deactivated_at is not None,
        created_at=user.created_at,
        last_seen_at=user.last_seen_at,
    )


async def find_user(db: AsyncSession, username: str) -> User:
    from melo_protocol.wire.accounts import normalize_username

    name = normalize_username(username)
    user = (await db.scalars(select(User).where(User.username == name))).first() if name else None
    if user is None:
        raise ApiError(ErrorCode.USER_NOT_FOUND, "no such user", {"username": username[:64]})
    return user


def _not_self(caller: Caller, user: User) -> None:
    if caller.user.id == user.id:
        raise ApiError(ErrorCode.CANNOT_TARGET_SELF, "an admin cannot do this to their own account")


async def list_users(db: AsyncSession, search: str | None, limit: int, offset: int) -> list[AdminUserSummary]:
    query = select(User).order_by(User.id).limit(limit).offset(offset)
    if search:
        pattern = "%" + search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(
            or_(User.username.like(pattern, escape="\\"), func.lower(User.display_name).like(pattern, escape="\\"))
        )
    return [summary(u) for u in (await db.scalars(query)).all()]


async def user_detail(db: AsyncSession, user: User) -> AdminUserDetail:
    sessions = await auth_service.active_sessions(db, user.id)
    return AdminUserDetail(
        **summary(user).model_dump(),
        ban_reason=user.ban_reason,
        sessions=[auth_service.session_out(s) for s in sessions],
    )


async def ban(db: AsyncSession, caller: Caller, user: User, reason: str | None, *, revocations: RevocationStore) -> int:
    _not_self(caller, user)
    reason = (check_text(reason, "reason", multiline=True) or None) if reason is not None else None
    user.banned_at = utcnow()
    user.ban_reason = reason
    await db.commit()
    return await auth_service.revoke_user_sessions(db, user.id, reason="banned", revocations=revocations)


async def unban(db: AsyncSession, user: User) -> None:
    user.banned_at = None
    user.ban_reason = None
    await db.commit()


async def deactivate(db: AsyncSession, caller: Caller, user: User, *, revocations: RevocationStore) -> int:
    _not_self(caller, user)
    user.deactivated_at = utcnow()
    await db.commit()
    return await auth_service.revoke_user_sessions(db, user.id, reason="deactivated", revocations=revocations)


async def reset_password(
    db: AsyncSession, user: User, new_password: str | None, *, passwords: Passwords, revocations: RevocationStore
) -> tuple[str | None, int]:
    from server.core.passwords import password_problem

    generated = None
    if new_password is None:
        generated = new_password = secrets.token_urlsafe(15)
    problem = password_problem(new_password, user.username)
    if problem:
        raise ApiError(ErrorCode.WEAK_PASSWORD, problem)
    user.password_hash = await passwords.hash(new_password)
    await db.commit()
    revoked = await auth_service.revoke_user_sessions(db, user.id, reason="password_reset", revocations=revocations)
    return generated, revoked


async def create_admin_on_host(
    username: str,
    password: str | None,
    *,
    replace_password: bool,
    sessions: async_sessionmaker[AsyncSession],
    passwords: Passwords,
    revocations: RevocationStore,
) -> dict[str, Any]:
    """``melo-server create-admin``: make ``username`` an admin, creating the account if needed.

    An existing user keeps their password and sessions, unless ``replace_password``: then ``password``
    replaces theirs and every session of theirs is revoked (as an admin's password reset does). The
    caller has already checked the password, before anything was created. Audited with the actor "host".
    """
    from server.accounts.service import canonical_username

    name = canonical_username(username)
    details: dict[str, Any] = {}

    async def run() -> dict[str, Any]:
        async with sessions() as db:
            user = (await db.scalars(select(User).where(User.username == name))).first()
            created = user is None
            replaced = False
            if user is None:
                if password is None:
                    raise ApiError(ErrorCode.VALIDATION_ERROR, "a new account needs a password", status=400)
                user = User(username=name, password_hash=await passwords.hash(password), created_at=utcnow())
                db.add(user)
            elif replace_password:
                if password is None:
                    raise ApiError(ErrorCode.VALIDATION_ERROR, "replacing a password needs the new one", status=400)
                user.password_hash = await passwords.hash(password)
                replaced = True
            elif password is not None:
                # the password was asked for a new account, but someone registered the name meanwhile
                raise ApiError(
                    ErrorCode.USERNAME_TAKEN, f"{name} was registered meanwhile; run create-admin again to promote them"
                )
            was_admin = not created and bool(user.is_admin)
            user.is_admin = True
            await db.commit()
            revoked = 0
            if replaced:
                revoked = await auth_service.revoke_user_sessions(
                    db, user.id, reason="password_reset", revocations=revocations
                )
            details.update(created=created, was_admin=was_admin, password_replaced=replaced, sessions_revoked=revoked)
            return {"id": user.id, "username": user.username, **details}

    return await audited(None, "users.create_admin", name, run, details, sessions=sessions)


async def set_admin(db: AsyncSession, caller: Caller, user: User, admin: bool) -> None:
    if not admin:
        _not_self(caller, user)
    user.is_admin = admin
    await db.commit()


def token_out(row: RegistrationToken) -> RegistrationTokenOut:
    return RegistrationTokenOut(
        token=row.token,
        created_at=row.created_at,
        expires_at=row.expires_at,
        max_uses=row.max_uses,
        uses=row.uses,
        revoked=row.revoked_at is not None,
    )


async def create_token(db: AsyncSession, caller: Caller, body: RegistrationTokenCreate) -> RegistrationTokenOut:
    now = utcnow()
    row = RegistrationToken(
        token=shareable_code(18),
        created_at=now,
        created_by=caller.user.id,
        expires_at=now + timedelta(seconds=body.expires_in_seconds) if body.expires_in_seconds else None,
        max_uses=body.max_uses,
        uses=0,
    )
    db.add(row)
    await db.commit()
    return token_out(row)


async def list_tokens(db: AsyncSession) -> list[RegistrationTokenOut]:
    rows = await db.scalars(select(RegistrationToken).order_by(RegistrationToken.created_at.desc()))
    return [token_out(r) for r in rows.all()]


async def revoke_token(db: AsyncSession, token: str) -> RegistrationTokenOut:
    row = await db.get(RegistrationToken, token) if plausible_registration_token(token) else None
    if row is None:
        raise ApiError(ErrorCode.TOKEN_NOT_FOUND, "no such registration token")
    row.revoked_at = row.revoked_at or utcnow()
    await db.commit()
    return token_out(row)


async def stats(db: AsyncSession) -> StatsOut:
    async def count(query: Any) -> int:
        return int((await db.execute(query)).scalar_one())

    return StatsOut(
        users=await count(select(func.count(User.id))),
        active_users=await count(
            select(func.count(User.id)).where(User.banned_at.is_(None), User.deactivated_at.is_(None))
        ),
        admins=await count(select(func.count(User.id)).where(User.is_admin.is_(True))),
        banned_users=await count(select(func.count(User.id)).where(User.banned_at.is_not(None))),
        sessions=await count(select(func.count(DeviceSession.id)).where(DeviceSession.revoked_at.is_(None))),
        messages=await count(select(func.count(Message.id)).where(Message.deleted_at.is_(None))),
    )


async def audit_entries(db: AsyncSession, limit: int, action: str | None = None) -> list[AuditEntry]:
    query = select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)
    if action:
        query = query.where(AuditLog.action == action)
    return [
        AuditEntry(
            id=r.id,
            actor=r.actor_username,
            action=r.action,
            target=r.target,
            outcome=r.outcome,
            details=json.loads(r.details or "{}"),
            created_at=r.created_at,
        )
        for r in (await db.scalars(query)).all()
    ]


def key_out(row: SigningKey, active_kid: str | None) -> AdminKeyOut:
    return AdminKeyOut(
        kid=row.kid,
        kind=row.kind,
        created_at=row.created_at,
        activates_at=row.activates_at,
        retired_at=row.retired_at,
        active=row.kid == active_kid,
    )


def key_list(rows: list[SigningKey], data_kid: str | None, vapid_kid: str | None) -> list[AdminKeyOut]:
    """Every key, the JWT key in use judged from the rows themselves (this worker's ring may be older);
    the data and VAPID keys in use are the ones this worker seals and signs pushes with."""
    jwt_kid = signing_kid(((r.kid, r.activates_at, r.retired_at) for r in rows if r.kind == "jwt"), utcnow())
    return [key_out(r, r.kid if r.kid in (jwt_kid, data_kid, vapid_kid) else None) for r in rows]
