"""Accounts: registration (open, closed, token), profile, avatar, password change, look-up."""

import asyncio
import hashlib
import io
import re
import unicodedata
import warnings

from PIL import Image, UnidentifiedImageError
from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from melo_protocol.wire import (
    ErrorCode,
    PasswordChangeRequest,
    ProfileUpdate,
    RegisterRequest,
    RegistrationMode,
    TokenResponse,
)
from melo_protocol.wire.accounts import normalize_username
from server.auth import service as auth_service
from server.config import Settings
from server.core.errors import ApiError
from server.core.jwt_keys import JwtKeyRing
from server.core.passwords import Passwords, password_problem
from server.core.ratelimit import RateLimiter
from server.core.revocation import RevocationStore
from server.db.models import Avatar, RegistrationToken, ServerState, User
from server.db.types import utcnow

REGISTRATION_MODE_STATE = "registration.mode"
AVATAR_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
AVATAR_MAX_SIDE = 512
AVATAR_MAX_PIXELS = 16_000_000  # refuse decompression bombs before decoding
REGISTRATION_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


async def registration_mode(db: AsyncSession, *, default: RegistrationMode) -> RegistrationMode:
    """The mode an admin set, else ``default`` (the server's setting)."""
    row = await db.get(ServerState, REGISTRATION_MODE_STATE)
    return RegistrationMode(row.value) if row else default


async def set_registration_mode(db: AsyncSession, mode: RegistrationMode) -> None:
    row = await db.get(ServerState, REGISTRATION_MODE_STATE)
    if row is None:
        db.add(ServerState(key=REGISTRATION_MODE_STATE, value=mode.value))
    else:
        row.value = mode.value
    await db.commit()


def canonical_username(raw: str) -> str:
    name = normalize_username(raw)
    if name is None:
        raise ApiError(
            ErrorCode.INVALID_USERNAME,
            "username must be 3-32 characters of a-z, 0-9, '_', '.', '-'",
        )
    return name


def plausible_registration_token(token: str) -> bool:
    """Tokens are URL-safe base64; anything else (a NUL, which PostgreSQL cannot even compare) is unknown."""
    return REGISTRATION_TOKEN_RE.fullmatch(token) is not None


async def _consume_registration_token(db: AsyncSession, token: str | None) -> None:
    if not token:
        raise ApiError(ErrorCode.REGISTRATION_TOKEN_REQUIRED, "registration needs a registration token")
    if not plausible_registration_token(token):
        raise ApiError(
            ErrorCode.REGISTRATION_TOKEN_INVALID, "registration token is unknown, expired, revoked or used up"
        )
    now = utcnow()
    result = await db.execute(
        update(RegistrationToken)
        .where(
            RegistrationToken.token == token,
            RegistrationToken.revoked_at.is_(None),
            or_(RegistrationToken.expires_at.is_(None), RegistrationToken.expires_at > now),
            or_(RegistrationToken.max_uses.is_(None), RegistrationToken.uses < RegistrationToken.max_uses),
        )
        .values(uses=RegistrationToken.uses + 1)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise ApiError(
            ErrorCode.REGISTRATION_TOKEN_INVALID, "registration token is unknown, expired, revoked or used up"
        )


async def register(
    db: AsyncSession,
    body: RegisterRequest,
    *,
    ip: str,
    user_agent: str | None,
    settings: Settings,
    limiter: RateLimiter,
    passwords: Passwords,
    keys: JwtKeyRing,
) -> TokenResponse:
    await limiter.hit(settings.rate_register_ip, "register-ip", ip)
    name = canonical_username(body.username)
    problem = password_problem(body.password, name)
    if problem:
        raise ApiError(ErrorCode.WEAK_PASSWORD, problem)
    mode = await registration_mode(db, default=settings.registration_mode)
    if mode == RegistrationMode.CLOSED:
        raise ApiError(ErrorCode.REGISTRATION_CLOSED, "registration is closed on this server")
    taken = ApiError(ErrorCode.USERNAME_TAKEN, "that username is taken")
    if (await db.scalars(select(User.id).where(User.username == name))).first() is not None:
        raise taken
    password_hash = await passwords.hash(body.password)
    # The token use and the new user commit together: a failed registration spends no use.
    if mode == RegistrationMode.TOKEN:
        await _consume_registration_token(db, body.registration_token)
    user = User(username=name, password_hash=password_hash, is_admin=False, created_at=utcnow())
    db.add(user)
    try:
        await db.flush()
    except IntegrityError:
        await db.rollback()
        raise taken from None
    return await auth_service.open_session(
        db, user=user, device_name=body.device_name, ip=ip, user_agent=user_agent, keys=keys
    )


def check_text(value: str, field: str, *, multiline: bool) -> str:
    """Refuse control characters (a newline only when multiline) and bidi overrides; strip."""
    for ch in value:
        if ch == "\n" and multiline:
            continue
        cat = unicodedata.category(ch)
        # control characters, and the bidi overrides that can disguise text in a terminal
        if cat == "Cc" or ch in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069":
            raise ApiError(
                ErrorCode.VALIDATION_ERROR, f"{field} contains control characters", {"field": field}, status=400
            )
    return value.strip()


def _optional_text(value: str | None, field: str, *, multiline: bool) -> str | None:
    """None or blank clears the field."""
    return (check_text(value, field, multiline=multiline) or None) if value is not None else None


async def update_profile(db: AsyncSession, user: User, body: ProfileUpdate) -> User:
    fields = body.model_fields_set
    if "display_name" in fields:
        user.display_name = _optional_text(body.display_name, "display_name", multiline=False)
    if "bio" in fields:
        user.bio = _optional_text(body.bio, "bio", multiline=True)
    await db.commit()
    return user


async def change_password(
    db: AsyncSession,
    user: User,
    body: PasswordChangeRequest,
    *,
    current_session: str,
    passwords: Passwords,
    revocations: RevocationStore,
) -> int:
    """Change the caller's password; every other session of theirs is revoked (their number)."""
    if not await passwords.verify(user.password_hash, body.current_password):
        raise ApiError(ErrorCode.INVALID_CREDENTIALS, "current password is wrong", status=403)
    problem = password_problem(body.new_password, user.username)
    if problem:
        raise ApiError(ErrorCode.WEAK_PASSWORD, problem)
    user.password_hash = await passwords.hash(body.new_password)
    await db.commit()
    return await auth_service.revoke_user_sessions(
        db, user.id, reason="password_changed", keep=current_session, revocations=revocations
    )


async def get_user(db: AsyncSession, username: str) -> User:
    name = normalize_username(username)
    user = (await db.scalars(select(User).where(User.username == name))).first() if name else None
    if user is None or user.deactivated_at is not None:
        raise ApiError(ErrorCode.USER_NOT_FOUND, "no such user", {"username": username[:64]})
    return user


def _reencode_avatar(data: bytes) -> tuple[bytes, str]:
    """Decode fully and re-encode: strips EXIF/XMP/text chunks and anything smuggled after the image."""
    invalid = ApiError(ErrorCode.INVALID_IMAGE, "avatar must be a valid PNG, JPEG or WebP image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = img.format or ""
            if fmt not in AVATAR_FORMATS:
                raise invalid
            if img.width * img.height > AVATAR_MAX_PIXELS:
                raise invalid
            img.load()
    except ApiError:
        raise
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
        EOFError,
    ):
        raise invalid from None
    img = img.convert("RGBA" if img.mode in ("RGBA", "LA", "P", "PA") and fmt != "JPEG" else "RGB")
    img.thumbnail((AVATAR_MAX_SIDE, AVATAR_MAX_SIDE))
    out = io.BytesIO()
    # a fresh image carries no info dict, so no metadata is written
    clean = Image.new(img.mode, img.size)
    clean.paste(img)
    clean.save(out, format=fmt, **({"quality": 90} if fmt in ("JPEG", "WEBP") else {}))
    return out.getvalue(), AVATAR_FORMATS[fmt]


async def set_avatar(db: AsyncSession, user: User, data: bytes) -> User:
    if not data:
        raise ApiError(ErrorCode.INVALID_IMAGE, "empty avatar")
    encoded, content_type = await asyncio.to_thread(_reencode_avatar, data)
    etag = hashlib.sha256(encoded).hexdigest()[:32]
    row = await db.get(Avatar, user.id)
    if row is None:
        db.add(Avatar(user_id=user.id, content_type=content_type, etag=etag, data=encoded, updated_at=utcnow()))
    else:
        row.content_type, row.etag, row.data, row.updated_at = content_type, etag, encoded, utcnow()
    user.avatar_etag = etag
    await db.commit()
    return user


async def delete_avatar(db: AsyncSession, user: User) -> User:
    row = await db.get(Avatar, user.id)
    if row is not None:
        await db.delete(row)
    user.avatar_etag = None
    await db.commit()
    return user


async def get_avatar(db: AsyncSession, username: str) -> Avatar:
    user = await get_user(db, username)
    row = await db.get(Avatar, user.id)
    if row is None:
        raise ApiError(ErrorCode.AVATAR_NOT_SET, "this user has no avatar")
    return row
