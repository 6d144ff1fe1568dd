"""Which device sessions are live, cached per worker: an access token must name one.

Defence in depth behind the signature: a token the server signed for a session that does not exist
(or no longer does), or one that has ended, is refused even when the revocation store never heard of
it (a revocation made by a host command without Redis, an entry that outlived the store's TTL).

Authentication runs on every request and on every WebSocket auth frame, so a live answer is kept for
``ttl_s`` and costs no query while it lasts; a revocation drops it at once on every worker (the bus's
"revoke" event), and the revocation store is checked before this cache in any case. A refusal is not
cached: session ids are random and only the server signs tokens, so nobody can make a worker look up
more of them than it issued.
"""

import time
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from melo_protocol.wire import ErrorCode
from server.core.errors import ApiError
from server.core.jwt_keys import AccessClaims, unauthorized
from server.db.models import DeviceSession

DEFAULT_TTL_S = 30.0
MAX_ENTRIES = 100_000


class LiveSessions:
    def __init__(self, ttl_s: float = DEFAULT_TTL_S, max_entries: int = MAX_ENTRIES) -> None:
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        # session id -> (user id, device id, monotonic time until which the answer holds)
        self._live: dict[str, tuple[int, str, float]] = {}

    async def check(self, db: AsyncSession, claims: AccessClaims) -> None:
        """Raise a 401 unless ``claims`` name a live session of that user and device."""
        now = time.monotonic()
        cached = self._live.get(claims.session_id)
        if cached is not None and cached[2] > now:
            user_id, device_id = cached[0], cached[1]
        else:
            row = (
                await db.execute(
                    select(DeviceSession.user_id, DeviceSession.device_id, DeviceSession.revoked_at).where(
                        DeviceSession.id == claims.session_id
                    )
                )
            ).first()
            if row is None:
                raise unauthorized(ErrorCode.INVALID_TOKEN, "this access token names no session")
            if row.revoked_at is not None:
                self._live.pop(claims.session_id, None)
                raise ApiError(ErrorCode.SESSION_REVOKED, "this session has been revoked")
            user_id, device_id = row.user_id, row.device_id
            self._remember(claims.session_id, user_id, device_id, now)
        if user_id != claims.user_id or device_id != claims.device_id:
            raise unauthorized(ErrorCode.INVALID_TOKEN, "this access token does not match its session")

    def forget(self, session_ids: Iterable[str]) -> None:
        for sid in session_ids:
            self._live.pop(sid, None)

    def _remember(self, session_id: str, user_id: int, device_id: str, now: float) -> None:
        if len(self._live) >= self._max_entries:
            self._live = {k: v for k, v in self._live.items() if v[2] > now}
            if len(self._live) >= self._max_entries:
                self._live.clear()
        self._live[session_id] = (user_id, device_id, now + self._ttl_s)
