"""Scheduled messages, disappearing-message timers and retention: the rules; the jobs carry them out
(server/jobs/tasks.py). A scheduled message obeys the send rules of the messages service when it is
scheduled, and is sent through that service when its time comes."""

from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from melo_protocol.wire import ErrorCode
from melo_protocol.wire.chats import ChatKind, MessageSend, Role
from melo_protocol.wire.jobs import MAX_SCHEDULE_AHEAD, RetentionOut, ScheduledOut, ScheduleRequest, TimerOut
from melo_protocol.wire.realtime import EventType
from server.chats import events
from server.chats.service import load_member
from server.core.caller import Caller
from server.core.errors import ApiError
from server.core.secrets import SecretBox
from server.db.models import Chat, ScheduledMessage, User
from server.db.types import utcnow
from server.jobs.tasks import scheduled_context
from server.messages.service import check_post
from server.realtime.bus import LocalBus, RedisBus

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


def scheduled_out(row: ScheduledMessage, *, box: SecretBox) -> ScheduledOut:
    body = MessageSend.model_validate_json(
        box.open(row.payload_sealed, context=scheduled_context(row.session_id, row.txn_id))
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


async def schedule(
    db: AsyncSession, caller: Caller, chat_id: int, body: ScheduleRequest, *, box: SecretBox
) -> ScheduledOut:
    """Keep a message to send at ``body.send_at``: it must be one the caller may post now, in a window of
    MAX_SCHEDULE_AHEAD, and at most MAX_PENDING_PER_USER wait per user. Its content is sealed at rest."""
    chat, member = await load_member(db, chat_id, caller.user.id)
    check_post(chat, member, body, e2e_hint="schedule an e2e envelope encrypted now")
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
        payload_sealed=box.seal(
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
    return scheduled_out(row, box=box)


async def pending(db: AsyncSession, user_id: int, *, box: SecretBox) -> list[ScheduledOut]:
    """This user's scheduled messages not sent yet, soonest first."""
    rows = (
        await db.scalars(
            select(ScheduledMessage)
            .where(ScheduledMessage.sender_id == user_id, ScheduledMessage.sent_at.is_(None))
            .order_by(ScheduledMessage.send_at, ScheduledMessage.id)
        )
    ).all()
    return [scheduled_out(r, box=box) for r in rows]


async def cancel(db: AsyncSession, user_id: int, scheduled_id: int) -> None:
    gone = await db.execute(
        delete(ScheduledMessage).where(
            ScheduledMessage.id == scheduled_id,
            ScheduledMessage.sender_id == user_id,
            ScheduledMessage.sent_at.is_(None),
        )
    )
    await db.commit()
    if gone.rowcount == 0:  # type: ignore[attr-defined]
        raise ApiError(
            ErrorCode.NOT_FOUND, "no such pending scheduled message of yours", {"scheduled_id": scheduled_id}
        )


async def set_timer(
    db: AsyncSession, me: User, chat_id: int, seconds: int | None, *, bus: LocalBus | RedisBus
) -> TimerOut:
    """Set (or clear) the chat's disappearing-message timer: anyone in a DM, its owner and admins elsewhere."""
    chat, member = await load_member(db, chat_id, me.id)
    if chat.kind != ChatKind.DIRECT.value and member.role == Role.MEMBER.value:
        raise ApiError(ErrorCode.CHAT_ADMIN_REQUIRED, "only the chat's owner and admins set its timer")
    chat.message_ttl_seconds = seconds
    chat.message_ttl_since = utcnow() if seconds is not None else None
    await events.emit(db, chat.id, EventType.CHAT_UPDATED, {"message_ttl_seconds": seconds, "by": me.username})
    await events.commit_and_publish(db, bus=bus)
    return TimerOut(chat_id=chat.id, seconds=seconds)


async def set_retention(
    sessions: async_sessionmaker[AsyncSession], chat_id: int, days: int | None, *, default_days: int
) -> RetentionOut:
    """Set (or clear) one chat's retention; ``default_days`` is the server's (0: keep forever)."""
    async with sessions() as db:
        chat = await db.get(Chat, chat_id)
        if chat is None:
            raise ApiError(ErrorCode.CHAT_NOT_FOUND, "no such chat", {"chat_id": chat_id})
        chat.retention_days = days
        await db.commit()
    effective = days if days is not None else (default_days or None)
    return RetentionOut(chat_id=chat_id, days=days, effective_days=effective)
