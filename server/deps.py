"""Route dependencies: database session, the caller's identity, admin-only access."""

import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from melo_protocol.wire import ErrorCode
from server.auth.service import account_closed
from server.core.caller import Caller
from server.core.errors import ApiError
from server.core.jwt_keys import AccessClaims
from server.db.models import DeviceSession, User
from server.db.types import utcnow
from server.state import AppState

LAST_SEEN_EVERY_S = 60.0


def get_state(request: Request) -> AppState:
    return request.app.state.melo  # type: ignore[no-any-return]


StateDep = Annotated[AppState, Depends(get_state)]


async def get_db(state: StateDep) -> AsyncIterator[AsyncSession]:
    async with state.sessions() as db:
        yield db


DbSession = Annotated[AsyncSession, Depends(get_db)]


def client_ip(request: Request, state: AppState) -> str:
    if state.settings.trust_forwarded_for:
        fwd = request.headers.get("x-forwarded-for")
        if fwd:
            return fwd.split(",")[0].strip()[:64]
    return request.client.host if request.client else "unknown"


# The one place routes get their token from: as a dependency, it also puts the bearer scheme in the
# OpenAPI document on exactly the routes that need a token (auto_error off: the refusal is ours, below).
bearer_scheme = HTTPBearer(
    scheme_name="bearerAuth", bearerFormat="JWT", auto_error=False,
    description="An access token from /v1/auth/login, /v1/auth/register or /v1/auth/refresh.",
)
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)]


def _bearer(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None:  # no Authorization header, another scheme, or an empty token
        raise ApiError(ErrorCode.UNAUTHENTICATED, "authentication required",
                       headers={"WWW-Authenticate": "Bearer"})
    return credentials.credentials


async def authenticate(state: AppState, db: AsyncSession, token: str) -> Caller:
    """Verify an access token and load its user: every REST request, and a WebSocket's ``auth`` frame."""
    return await check_session(state, db, await state.keys.verify_access(token))


async def check_session(state: AppState, db: AsyncSession, claims: AccessClaims) -> Caller:
    """The caller behind verified claims, if their session is live and their account open: checked for
    every request, and again before each command on a socket (revocations and bans apply mid-connection)."""
    if await state.revocations.is_revoked(claims.session_id):
        # a ban or deactivation revokes every session: name that, not the revocation it caused
        raise account_closed(await db.get(User, claims.user_id), 401) or ApiError(
            ErrorCode.SESSION_REVOKED, "this session has been revoked")
    await state.live_sessions.check(db, claims)
    user = await db.get(User, claims.user_id)
    if user is None:
        raise ApiError(ErrorCode.INVALID_TOKEN, "unknown user")
    if (refusal := account_closed(user, 401)) is not None:
        raise refusal
    return Caller(user=user, claims=claims)


async def _touch_last_seen(state: AppState, db: AsyncSession, caller: Caller, request: Request) -> None:
    now = time.monotonic()
    sid = caller.session_id
    if now - state.last_seen_written.get(sid, 0.0) < LAST_SEEN_EVERY_S:
        return
    state.last_seen_written[sid] = now
    if len(state.last_seen_written) > 50_000:
        state.last_seen_written.clear()
    ts = utcnow()
    await db.execute(
        update(DeviceSession)
        .where(DeviceSession.id == sid)
        .values(last_seen_at=ts, ip=client_ip(request, state))
    )
    await db.execute(update(User).where(User.id == caller.user.id).values(last_seen_at=ts))
    await db.commit()


async def get_caller(request: Request, state: StateDep, db: DbSession, credentials: BearerCredentials) -> Caller:
    caller = await authenticate(state, db, _bearer(credentials))
    await state.limiter.hit(state.settings.rate_user, "user", str(caller.user.id))
    await _touch_last_seen(state, db, caller, request)
    return caller


CurrentCaller = Annotated[Caller, Depends(get_caller)]


async def get_admin(caller: CurrentCaller) -> Caller:
    if not caller.user.is_admin:
        raise ApiError(ErrorCode.ADMIN_REQUIRED, "this action needs the admin role")
    return caller


AdminCaller = Annotated[Caller, Depends(get_admin)]
