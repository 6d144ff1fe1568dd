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

from melo_protocol.wire.chats import MessageOut
from melo_protocol.wire.realtime import EventType
from server.db.models import Chat, ChatEvent, Message, User
from server.db.types import utcnow
from server.realtime.bus import BusEvent
from server.state import AppState

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
    row = ChatEvent(chat_id=chat_id, seq=seq, type=type_.value, message_id=message_id,
                    payload=json.dumps(stored, default=str), created_at=utcnow())
    db.add(row)
    db.info.setdefault(_PENDING, []).append(
        Pending(row, data, list(member_add), list(member_remove))
    )
    return row


def event_frame(chat_id: int, seq: int, type_: str, ts: datetime, data: dict[str, Any]) -> str:
    return json.dumps(
        {"type": type_, "chat_id": chat_id, "seq": seq, "ts": ts.isoformat(), "data": data},
        separators=(",", ":"),
        default=str,
        ensure_ascii=False,
    )


async def commit_and_publish(state: AppState, db: AsyncSession) -> None:
    """Commit, then publish what the transaction emitted. Nothing is published if the commit fails."""
    pending: list[Pending] = db.info.pop(_PENDING, [])
    await db.commit()
    for p in pending:
        ev = p.event
        await state.bus.publish(
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
    state: AppState, db: AsyncSession, chat_id: int, after_seq: int, up_to: int | None, limit: int
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
    messages = await messages_out(state, db, message_ids) if message_ids else {}
    out = []
    for r in rows:
        if r.type in MESSAGE_EVENTS and r.message_id in messages:
            data = messages[r.message_id].model_dump(mode="json")
        else:
            data = json.loads(r.payload or "{}")
        out.append((r.seq, event_frame(r.chat_id, r.seq, r.type, r.created_at, data)))
    return out


async def messages_out(
    state: AppState, db: AsyncSession, message_ids: Iterable[int], *, with_reactions: bool = False
) -> dict[int, MessageOut]:
    from server.messages.service import message_out  # late: messages builds on events

    ids = list(message_ids)
    if not ids:
        return {}
    rows = (
        await db.execute(select(Message, User.username).join(User, User.id == Message.sender_id).where(
            Message.id.in_(ids)))
    ).all()
    reactions: dict[int, dict[str, list[str]]] = {}
    if with_reactions:
        from server.messages.service import reactions_for

        reactions = await reactions_for(db, ids)
    return {m.id: await message_out(state, m, username, reactions.get(m.id)) for m, username in rows}


__all__: Sequence[str] = ["commit_and_publish", "emit", "event_frame", "next_seq", "replay"]
