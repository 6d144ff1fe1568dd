"""Re-checks a socket's session before each command: revocations and bans apply mid-connection too."""

from sqlalchemy.ext.asyncio import AsyncSession

from melo_protocol.wire import ErrorCode
from server.auth.service import account_closed
from server.core.errors import ApiError
from server.core.jwt_keys import AccessClaims
from server.db.models import User
from server.deps import Caller
from server.state import AppState


async def caller_for_socket(state: AppState, db: AsyncSession, conn_user_id: int, session_id: str,
                            device_id: str) -> Caller:
    user = await db.get(User, conn_user_id)
    if (refusal := account_closed(user, 401)) is not None:  # banned: say so, not "revoked"
        raise refusal
    if user is None or await state.revocations.is_revoked(session_id):
        raise ApiError(ErrorCode.SESSION_REVOKED, "this session has been revoked")
    claims = AccessClaims(user_id=user.id, session_id=session_id, device_id=device_id, jti="ws", expires_at=0)
    return Caller(user=user, claims=claims)
