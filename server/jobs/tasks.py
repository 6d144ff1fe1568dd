"""The jobs themselves. Each takes the app state and the scheduler clock's "now", returns a summary."""

import logging
from datetime import datetime, timedelta

from sqlalchemy import delete, func, or_, select, update

from melo_protocol.wire.chats import MessageSend
from melo_protocol.wire.realtime import EventType
from server.chats import events
from server.core.caller import Caller
from server.core.data_keys import ACTIVE_STATE as DATA_ACTIVE_STATE
from server.core.errors import ApiError
from server.core.jwt_keys import ACTIVE_KID_STATE as JWT_ACTIVE_STATE
from server.core.jwt_keys import AccessClaims
from server.db.models import (
    Chat,
    ChatEvent,
    DeviceSession,
    Invite,
    Message,
    MessageTxn,
    Reaction,
    RegistrationToken,
    ScheduledMessage,
    ServerState,
    SigningKey,
    ToDeviceMessage,
    User,
)
from server.state import AppState

log = logging.getLogger("melo.jobs")
BATCH = 500


def scheduled_context(session_id: str, txn_id: str) -> bytes:
    return f"scheduled:{session_id}:{txn_id}".encode()


# ---- retention --------------------------------------------------------------------------------------
async def purge_chat(state: AppState, chat_id: int, cutoff: datetime) -> int:
    """Delete the chat's events and messages from before ``cutoff``; raise purged_seq to match."""
    async with state.sessions() as db:
        cut_seq = await db.scalar(
            select(func.max(ChatEvent.seq)).where(ChatEvent.chat_id == chat_id, ChatEvent.created_at < cutoff)
        )
    if cut_seq is None:
        return 0
    deleted = 0
    while True:
        async with state.sessions() as db:
            ids = list(
                (
                    await db.scalars(
                        select(Message.id).where(Message.chat_id == chat_id, Message.seq <= cut_seq).limit(BATCH)
                    )
                ).all()
            )
            if not ids:
                break
            await db.execute(delete(Reaction).where(Reaction.message_id.in_(ids)))
            await db.execute(delete(MessageTxn).where(MessageTxn.message_id.in_(ids)))
            await db.execute(delete(Message).where(Message.id.in_(ids)))
            await db.commit()
            deleted += len(ids)
    async with state.sessions() as db:
        await db.execute(delete(ChatEvent).where(ChatEvent.chat_id == chat_id, ChatEvent.seq <= cut_seq))
        # a cursor at or below purged_seq gets resync_required on resume
        await db.execute(update(Chat).where(Chat.id == chat_id, Chat.purged_seq < cut_seq).values(purged_seq=cut_seq))
        await db.commit()
    return deleted


async def retention(state: AppState, now: datetime) -> dict[str, int]:
    default = state.settings.retention_days
    async with state.sessions() as db:
        chats = (await db.execute(select(Chat.id, Chat.retention_days))).all()
    purged: dict[str, int] = {}
    for chat_id, days in chats:
        keep = days if days is not None else default
        if not keep:
            continue
        n = await purge_chat(state, int(chat_id), now - timedelta(days=keep))
        if n:
            purged[str(chat_id)] = n
    return purged


# ---- clean-up ---------------------------------------------------------------------------------------
async def cleanup(state: AppState, now: datetime) -> dict[str, int]:
    s = state.settings
    out: dict[str, int] = {}
    keep = now - timedelta(days=s.revoked_session_keep_days)  # admins still see recent ones
    async with state.sessions() as db:
        gone = await db.execute(
            delete(Invite).where(
                or_(
                    Invite.expires_at <= keep,
                    Invite.revoked_at <= keep,
                    (Invite.max_uses.is_not(None)) & (Invite.uses >= Invite.max_uses) & (Invite.created_at <= keep),
                )
            )
        )
        out["invites"] = int(gone.rowcount)  # type: ignore[attr-defined]
        gone = await db.execute(
            delete(RegistrationToken).where(
                or_(
                    RegistrationToken.expires_at <= keep,
                    RegistrationToken.revoked_at <= keep,
                    (RegistrationToken.max_uses.is_not(None))
                    & (RegistrationToken.uses >= RegistrationToken.max_uses)
                    & (RegistrationToken.created_at <= keep),
                )
            )
        )
        out["registration_tokens"] = int(gone.rowcount)  # type: ignore[attr-defined]
        gone = await db.execute(delete(ToDeviceMessage).where(ToDeviceMessage.expires_at <= now))
        out["to_device"] = int(gone.rowcount)  # type: ignore[attr-defined]
        idle_before = now - timedelta(days=s.session_idle_days)
        idle = list(
            (
                await db.scalars(
                    select(DeviceSession.id).where(
                        DeviceSession.revoked_at.is_(None),
                        func.coalesce(DeviceSession.last_seen_at, DeviceSession.created_at) < idle_before,
                    )
                )
            ).all()
        )
        if idle:
            await db.execute(
                update(DeviceSession).where(DeviceSession.id.in_(idle)).values(revoked_at=now, revoke_reason="idle")
            )
        await db.commit()
    if idle:
        await state.revocations.revoke(idle)  # every worker closes their sockets; their devices leave
    out["idle_sessions"] = len(idle)
    async with state.sessions() as db:
        gone = await db.execute(delete(DeviceSession).where(DeviceSession.revoked_at < keep))
        out["revoked_sessions"] = int(gone.rowcount)  # type: ignore[attr-defined]
        await db.commit()
    return out


# ---- key rotation -----------------------------------------------------------------------------------
async def _active_key_age(state: AppState, state_key: str, now: datetime) -> timedelta | None:
    async with state.sessions() as db:
        active = await db.get(ServerState, state_key)
        row = await db.get(SigningKey, active.value) if active is not None else None
    return now - row.created_at if row is not None else None


async def rotate_keys(state: AppState, now: datetime) -> dict[str, str]:
    """Monthly: a new JWT signing key (the old one stays published until its tokens expire) and a new
    data key with background re-encryption of what the old one sealed."""
    every = timedelta(days=state.settings.key_rotation_days)
    rotated: dict[str, str] = {}
    age = await _active_key_age(state, JWT_ACTIVE_STATE, now)
    if age is not None and age >= every:
        rotated["jwt"] = (await state.keys.rotate()).kid
    age = await _active_key_age(state, DATA_ACTIVE_STATE, now)
    if age is not None and age >= every:
        rotated["data"] = (await state.data_keys.rotate()).kid
    if rotated:
        await state.announce_key_rotation()  # every worker publishes / seals now, not when its ring goes stale
        log.info("scheduled key rotation: %s", rotated)
    if "data" in rotated:
        state.data_keys.start_reencryption()
    return rotated


# ---- scheduled messages -----------------------------------------------------------------------------
async def send_scheduled(state: AppState, now: datetime) -> dict[str, int]:
    from server.messages import service as messages  # late: messages imports the app's send path

    async with state.sessions() as db:
        due = list(
            (
                await db.scalars(
                    select(ScheduledMessage)
                    .where(ScheduledMessage.sent_at.is_(None), ScheduledMessage.send_at <= now)
                    .order_by(ScheduledMessage.send_at, ScheduledMessage.id)
                    .limit(BATCH)
                )
            ).all()
        )
    sent = failed = 0
    for row in due:
        message_id: int | None = None
        error: str | None = None
        async with state.sessions() as db:
            session = await db.get(DeviceSession, row.session_id)
            user = await db.get(User, row.sender_id)
            if session is None or session.revoked_at is not None:
                error = "session_revoked"
            elif user is None or user.banned_at is not None or user.deactivated_at is not None:
                error = "account_disabled"
            else:
                body = MessageSend.model_validate_json(
                    state.box.open(row.payload_sealed, context=scheduled_context(row.session_id, row.txn_id))
                )
                claims = AccessClaims(
                    user_id=user.id,
                    session_id=row.session_id,
                    device_id=row.device_id,
                    jti=f"scheduled-{row.id}",
                    expires_at=0,
                )
                try:
                    # the normal send path: membership, slow mode, idempotency by txn_id, fan-out, push
                    out = await messages.send(
                        db,
                        Caller(user=user, claims=claims),
                        row.chat_id,
                        body,
                        data_keys=state.data_keys,
                        bus=state.bus,
                        push=state.push,
                    )
                    message_id = out.id
                except ApiError as exc:
                    await db.rollback()
                    error = exc.code[:64]
        async with state.sessions() as db:
            await db.execute(
                update(ScheduledMessage)
                .where(ScheduledMessage.id == row.id)
                .values(sent_at=now, message_id=message_id, error=error)
            )
            await db.commit()
        if error is None:
            sent += 1
        else:
            failed += 1
            log.info("scheduled message %s not sent: %s", row.id, error)
    return {"sent": sent, "failed": failed}


# ---- disappearing messages --------------------------------------------------------------------------
async def expire_disappearing(state: AppState, now: datetime) -> dict[str, int]:
    """Tombstone messages older than their chat's timer and tell members (message.deleted) to purge them."""
    async with state.sessions() as db:
        chats = (
            await db.execute(
                select(Chat.id, Chat.message_ttl_seconds, Chat.message_ttl_since).where(
                    Chat.message_ttl_seconds.is_not(None)
                )
            )
        ).all()
    out: dict[str, int] = {}
    for chat_id, ttl, since in chats:
        cutoff = now - timedelta(seconds=int(ttl))
        async with state.sessions() as db:
            query = select(Message).where(
                Message.chat_id == chat_id, Message.deleted_at.is_(None), Message.created_at <= cutoff
            )
            if since is not None:
                query = query.where(Message.created_at >= since)  # the timer covers messages sent after it was set
            expired = list((await db.scalars(query.order_by(Message.seq).limit(BATCH))).all())
            if not expired:
                continue
            ids = [m.id for m in expired]
            await db.execute(delete(Reaction).where(Reaction.message_id.in_(ids)))
            for m in expired:
                m.deleted_at, m.body, m.key_id, m.pinned_at = now, None, None, None
                await events.emit(
                    db,
                    int(chat_id),
                    EventType.MESSAGE_DELETED,
                    {"message_id": m.id, "by": None, "reason": "expired"},
                    message_id=m.id,
                )
            await events.commit_and_publish(db, bus=state.bus)
            out[str(chat_id)] = len(ids)
    return out
