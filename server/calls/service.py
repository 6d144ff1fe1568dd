"""ICE server configuration with coturn REST credentials, and missed-call chat events."""

import base64
import hashlib
import hmac
import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from melo_protocol.wire.calls import IceServer, IceServers, MissedCall, MissedCallOut
from melo_protocol.wire.realtime import EventType
from server.chats import events
from server.chats.service import load_member
from server.config import Settings
from server.core.caller import Caller
from server.db.types import utcnow
from server.realtime.bus import LocalBus, RedisBus


def turn_credentials(secret: str, user_id: int, ttl_seconds: int, now: float | None = None) -> tuple[str, str]:
    """coturn's REST scheme (use-auth-secret): username "<expiry>:<user>", password base64(HMAC-SHA1)."""
    expiry = int((time.time() if now is None else now) + ttl_seconds)
    username = f"{expiry}:{user_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_servers(settings: Settings, caller: Caller) -> IceServers:
    out: list[IceServer] = []
    if settings.ice_stun_urls:
        out.append(IceServer(urls=list(settings.ice_stun_urls)))
    if settings.ice_turn_urls and settings.turn_secret is not None:
        username, credential = turn_credentials(
            settings.turn_secret.get_secret_value(), caller.user.id, settings.turn_ttl_seconds
        )
        out.append(IceServer(urls=list(settings.ice_turn_urls), username=username, credential=credential))
    return IceServers(ice_servers=out, ttl_seconds=settings.turn_ttl_seconds)


async def record_missed(
    db: AsyncSession, caller: Caller, chat_id: int, body: MissedCall, *, bus: LocalBus | RedisBus
) -> MissedCallOut:
    """A ``call.missed`` event in the chat: metadata only (call id, who called, when)."""
    await load_member(db, chat_id, caller.user.id)  # 404 unless the caller is a member
    at = body.at or utcnow()
    data: dict[str, Any] = {"call_id": body.call_id, "caller": caller.user.username, "at": at.isoformat()}
    row = await events.emit(db, chat_id, EventType.CALL_MISSED, data)
    await events.commit_and_publish(db, bus=bus)
    return MissedCallOut(chat_id=chat_id, seq=row.seq, call_id=body.call_id, caller=caller.user.username, at=at)
