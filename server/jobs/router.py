"""Routes of the background duties: scheduled messages, disappearing-message timers, retention (admin)."""

from datetime import UTC, datetime

from fastapi import APIRouter, Response
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from melo_protocol.wire import ErrorCode
from melo_protocol.wire.bounds import Id
from melo_protocol.wire.chats import ChatKind, MessageSend, Role
from melo_protocol.wire.jobs import (
    MAX_SCHEDULE_AHEAD,
    RetentionOut,
    RetentionRequest,
    RetentionRun,
    ScheduledList,
    ScheduledOut,
    ScheduleRequest,
    TimerOut,
    TimerRequest,
)
from melo_protocol.wire.realtime import EventType
from server.admin import service as admin_service
from server.chats import events
from server.chats.service import ADMIN_ROLES, load_member
from server.core.errors import ApiError
from server.db.models import Chat, ScheduledMessage
from server.db.types import utcnow
from server.deps import AdminCaller, CurrentCaller, DbSession, StateDep
from server.jobs.tasks import scheduled_context

router = APIRouter(tags=["jobs"])
MAX_PENDING_PER_USER = 1000


def _minute(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC")


def _outside_window(send_at: datetime, now: datetime) -> ApiError:
    """The refusal of a send time outside (now, now + MAX_SCHEDULE_AHEAD], stating the window."""
    latest = now + MAX_SCHEDULE_AHEAD
    problem = "is in the past" if send_at <= now else f"is more than {MAX_SCHEDULE_AHEAD.days} days ahead"
    return ApiError(
        ErrorCode.VALIDATION_ERROR,
        f"send time {_minute(send_at)} {problem}: pick a time after now and before {_minute(latest)}",
        {"field": "send_at", "earliest": now.isoformat(), "latest": latest.isoformat()},
        status=400,
    )


def _out(state: StateDep, row: ScheduledMessage) -> ScheduledOut:
    body = MessageSend.model_validate_json(
        state.box.open(row.payload_sealed, context=scheduled_context(row.session_id, row.txn_id))
    )
    return ScheduledOut(
        id=row.id,
        chat_id=row.chat_id,
        txn_id=row.txn_id,
        send_at=row.send_at,
        created_at=row.created_at,
        text=body.text,
        e2e=body.e2e.model_dump(mode="json") if body.e2e is not None else None,
    )


@router.post("/v1/chats/{chat_id}/scheduled", response_model=ScheduledOut, status_code=201)
async def schedule(
    chat_id: Id, body: ScheduleRequest, caller: CurrentCaller, state: StateDep, db: DbSession
) -> ScheduledOut:
    chat, member = await load_member(db, chat_id, caller.user.id)
    if chat.kind == ChatKind.CHANNEL.value and member.role not in ADMIN_ROLES:
        raise ApiError(
            ErrorCode.CHANNEL_READ_ONLY, "only the channel's owner and admins post here", {"chat_id": chat.id}
        )
    if chat.e2e and body.text is not None:
        raise ApiError(
            ErrorCode.E2E_REQUIRED,
            "this chat is end-to-end encrypted: schedule an e2e envelope encrypted now",
            {"chat_id": chat.id},
        )
    if not chat.e2e and body.e2e is not None:
        raise ApiError(
            ErrorCode.E2E_NOT_ALLOWED, "this chat is not end-to-end encrypted: send text", {"chat_id": chat.id}
        )
    now = utcnow()
    send_at = body.send_at.astimezone(UTC)
    if send_at <= now or send_at > now + MAX_SCHEDULE_AHEAD:
        raise _outside_window(send_at, now)
    pending = await db.scalar(
        select(ScheduledMessage.id)
        .where(ScheduledMessage.sender_id == caller.user.id, ScheduledMessage.sent_at.is_(None))
        .offset(MAX_PENDING_PER_USER - 1)
        .limit(1)
    )
    if pending is not None:
        raise ApiError(ErrorCode.VALIDATION_ERROR, f"at most {MAX_PENDING_PER_USER} scheduled messages", status=409)
    payload = MessageSend(txn_id=body.txn_id, text=body.text, e2e=body.e2e, reply_to=body.reply_to)
    row = ScheduledMessage(
        chat_id=chat.id,
        sender_id=caller.user.id,
        session_id=caller.session_id,
        device_id=caller.claims.device_id,
        txn_id=body.txn_id,
        send_at=send_at,
        created_at=now,
        payload_sealed=state.box.seal(
            payload.model_dump_json().encode(), context=scheduled_context(caller.session_id, body.txn_id)
        ),
    )
    db.add(row)
    try:
        await db.commit()
    except IntegrityError:
        raise ApiError(
            ErrorCode.VALIDATION_ERROR, "this device already scheduled that txn_id", {"txn_id": body.txn_id}, status=409
        ) from None
    return _out(state, row)


@router.get("/v1/scheduled", response_model=ScheduledList)
async def list_scheduled(caller: CurrentCaller, state: StateDep, db: DbSession) -> ScheduledList:
    rows = (
        await db.scalars(
            select(ScheduledMessage)
            .where(ScheduledMessage.sender_id == caller.user.id, ScheduledMessage.sent_at.is_(None))
            .order_by(ScheduledMessage.send_at, ScheduledMessage.id)
        )
    ).all()
    return ScheduledList(scheduled=[_out(state, r) for r in rows])


@router.delete("/v1/scheduled/{scheduled_id}", status_code=204)
async def cancel_scheduled(scheduled_id: Id, caller: CurrentCaller, db: DbSession) -> Response:
    gone = await db.execute(
        delete(ScheduledMessage).where(
            ScheduledMessage.id == scheduled_id,
            ScheduledMessage.sender_id == caller.user.id,
            ScheduledMessage.sent_at.is_(None),
        )
    )
    await db.commit()
    if gone.rowcount == 0:  # type: ignore[attr-defined]
        raise ApiError(
            ErrorCode.NOT_FOUND, "no such pending scheduled message of yours", {"scheduled_id": scheduled_id}
        )
    return Response(status_code=204)


@router.put("/v1/chats/{chat_id}/timer", response_model=TimerOut)
async def set_timer(chat_id: Id, body: TimerRequest, caller: CurrentCaller, state: StateDep, db: DbSession) -> TimerOut:
    chat, member = await load_member(db, chat_id, caller.user.id)
    if chat.kind != ChatKind.DIRECT.value and member.role == Role.MEMBER.value:
        raise ApiError(ErrorCode.CHAT_ADMIN_REQUIRED, "only the chat's owner and admins set its timer")
    chat.message_ttl_seconds = body.seconds
    chat.message_ttl_since = utcnow() if body.seconds is not None else None
    await events.emit(
        db, chat.id, EventType.CHAT_UPDATED, {"message_ttl_seconds": body.seconds, "by": caller.user.username}
    )
    await events.commit_and_publish(db, bus=state.bus)
    return TimerOut(chat_id=chat.id, seconds=body.seconds)


@router.put("/v1/admin/chats/{chat_id}/retention", response_model=RetentionOut)
async def set_retention(chat_id: Id, body: RetentionRequest, caller: AdminCaller, state: StateDep) -> RetentionOut:
    async def run() -> RetentionOut:
        async with state.sessions() as db:
            chat = await db.get(Chat, chat_id)
            if chat is None:
                raise ApiError(ErrorCode.CHAT_NOT_FOUND, "no such chat", {"chat_id": chat_id})
            chat.retention_days = body.days
            await db.commit()
        effective = body.days if body.days is not None else (state.settings.retention_days or None)
        return RetentionOut(chat_id=chat_id, days=body.days, effective_days=effective)

    return await admin_service.audited(state, caller, "retention.set", f"chat:{chat_id}", run, {"days": body.days})


@router.post("/v1/admin/retention/run", response_model=RetentionRun)
async def run_retention(caller: AdminCaller, state: StateDep) -> RetentionRun:
    async def run() -> RetentionRun:
        return RetentionRun(purged=await state.jobs.run_now("retention"))

    return await admin_service.audited(state, caller, "retention.run", None, run)
