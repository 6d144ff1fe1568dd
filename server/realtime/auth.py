"""Re-checks a socket's session before each command: revocations and bans apply mid-connection too."""

from sqlalchemy.ext.asyncio import AsyncSession

from melo_protocol.wire import ErrorCode
from server.core.errors import ApiError
from server.core.jwt_keys import AccessClaims
from server.db.models import User
from server.deps import Caller
from server.state import AppState


async def caller_for_socket(state: AppState, db: AsyncSession, conn_user_id: int, session_id: str,
                            device_id: str) -> Caller:
    if await state.revocations.is_revoked(session_id):
        raise ApiError(401, ErrorCode.SESSION_REVOKED, "this session has been revoked")
    user = await db.get(User, conn_user_id)
    if user is None or user.banned_at is not None or user.deactivated_at is not None:
        raise ApiError(401, ErrorCode.SESSION_REVOKED, "this account can no longer sign in")
    claims = AccessClaims(user_id=user.id, session_id=session_id, device_id=device_id, jti="ws", expires_at=0)
    return Caller(user=user, claims=claims)
