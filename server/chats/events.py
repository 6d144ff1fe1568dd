"""Chat events: numbered per chat inside the writing transaction, published on the bus after commit.

``emit`` bumps ``chats.last_seq`` under the chat's row lock, so events of one chat commit in seq order.
Frames are built once by ``event_frame`` for both the live path and the resume path.
"""

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from melo_protocol.wire.realtime import EventType
from server.core.data_keys import DataKeyRing
from server.db.models import Chat, ChatEvent
from server.db.types import utcnow
from server.messages.views import messages_out
from server.realtime.bus import BusEvent, LocalBus, RedisBus
from server.realtime.frames import chat_event_frame

_PENDING = "melo.pending_events"
MESSAGE_EVENTS = {EventType.MESSAGE_CREATED, EventType.MESSAGE_EDITED}


@dataclass
class Pending:
    event: ChatEvent
    data: dict[str, Any]
    member_add: list[int] = field(default_factory=list)
    member_remove: list[int] = field(default_factory=list)


async def next_seq(db: AsyncSession, chat_id: int) -> int:
    await db.execute(update(Chat).where(Chat.id == chat_id).values(last_seq=Chat.last_seq + 1))
    return int((await db.execute(select(Chat.last_seq).where(Chat.id == chat_id))).scalar_one())


async def emit(
    db: AsyncSession,
    chat_id: int,
    type_: EventType,
    data: dict[str, Any],
    *,
    message_id: int | None = None,
    member_add: Iterable[int] = (),
    member_remove: Iterable[int] = (),
    seq: int | None = None,
) -> ChatEvent:
    """Add an event to the chat's stream in the current transaction; published after commit.

    For message events ``data`` is the full message (sent live) and is not stored: the resume path
    reads the message row instead, so content lives in one place.
    """
    if seq is None:
        seq = await next_seq(db, chat_id)
    stored = {} if type_ in MESSAGE_EVENTS else data
    row = ChatEvent(
        chat_id=chat_id,
        seq=seq,
        type=type_.value,
        message_id=message_id,
        payload=json.dumps(stored, default=str),
        created_at=utcnow(),
    )
    db.add(row)
    db.info.setdefault(_PENDING, []).append(Pending(row, data, list(member_add), list(member_remove)))
    return row


def event_frame(chat_id: int, seq: int, type_: str, ts: datetime, data: dict[str, Any]) -> str:
    return chat_event_frame(chat_id, seq, type_, ts, data)


async def commit_and_publish(db: AsyncSession, *, bus: LocalBus | RedisBus) -> None:
    """Commit, then publish what the transaction emitted. Nothing is published if the commit fails."""
    pending: list[Pending] = db.info.pop(_PENDING, [])
    await db.commit()
    for p in pending:
        ev = p.event
        await bus.publish(
            BusEvent(
                kind="chat",
                chat_id=ev.chat_id,
                seq=ev.seq,
                frame=event_frame(ev.chat_id, ev.seq, ev.type, ev.created_at, p.data),
                member_add=p.member_add,
                member_remove=p.member_remove,
            )
        )


def discard_pending(db: AsyncSession) -> None:
    db.info.pop(_PENDING, None)


async def replay(
    db: AsyncSession, chat_id: int, after_seq: int, up_to: int | None, limit: int, *, data_keys: DataKeyRing
) -> list[tuple[int, str]]:
    """Stored events of a chat after ``after_seq`` (and at most ``up_to``) as (seq, frame)."""
    query = (
        select(ChatEvent)
        .where(ChatEvent.chat_id == chat_id, ChatEvent.seq > after_seq)
        .order_by(ChatEvent.seq)
        .limit(limit)
    )
    if up_to is not None:
        query = query.where(ChatEvent.seq <= up_to)
    rows = (await db.scalars(query)).all()
    message_ids = {r.message_id for r in rows if r.type in MESSAGE_EVENTS and r.message_id}
    messages = await messages_out(db, message_ids, data_keys=data_keys) if message_ids else {}
    out = []
    for r in rows:
        if r.type in MESSAGE_EVENTS and r.message_id in messages:
            data = messages[r.message_id].model_dump(mode="json")
        else:
            data = json.loads(r.payload or "{}")
        out.append((r.seq, event_frame(r.chat_id, r.seq, r.type, r.created_at, data)))
    return out


__all__: Sequence[str] = ["commit_and_publish", "emit", "event_frame", "next_seq", "replay"]
