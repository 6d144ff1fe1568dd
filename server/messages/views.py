"""Messages as clients see them (``MessageOut``): built from rows, with their reactions and readable text.

Shared by the messages service, chat listings (each chat's last message) and the event replay, so it
imports none of them.
"""

import json
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from melo_protocol.wire.chats import MessageOut
from server.core.data_keys import DataKeyRing
from server.db.models import Message, Reaction, User


async def message_out(
    m: Message, sender: str, reactions: dict[str, list[str]] | None = None, *, data_keys: DataKeyRing
) -> MessageOut:
    text = None
    e2e = None
    if m.deleted_at is None and m.body is not None:
        if m.kind == "e2e":
            e2e = json.loads(m.body)
        elif m.key_id:
            text = await data_keys.open(m.key_id, m.body, str(m.chat_id).encode())
        else:
            text = m.body
    return MessageOut(
        id=m.id,
        chat_id=m.chat_id,
        seq=m.seq,
        sender=sender,
        sender_id=m.sender_id,
        sender_device=m.sender_device,
        text=text,
        e2e=e2e,
        reply_to=m.reply_to,
        created_at=m.created_at,
        edited_at=m.edited_at,
        deleted=m.deleted_at is not None,
        reactions=reactions or {},
        pinned=m.pinned_at is not None and m.deleted_at is None,
    )


async def reactions_for(db: AsyncSession, message_ids: list[int]) -> dict[int, dict[str, list[str]]]:
    out: dict[int, dict[str, list[str]]] = {}
    if not message_ids:
        return out
    rows = await db.execute(
        select(Reaction.message_id, Reaction.emoji, User.username)
        .join(User, User.id == Reaction.user_id)
        .where(Reaction.message_id.in_(message_ids))
        .order_by(Reaction.created_at)
    )
    for mid, emoji, username in rows.all():
        out.setdefault(int(mid), {}).setdefault(emoji, []).append(username)
    return out


async def page_out(db: AsyncSession, rows: list[tuple[Message, str]], *, data_keys: DataKeyRing) -> list[MessageOut]:
    """(message, sender name) rows as clients see them, each with its reactions."""
    reactions = await reactions_for(db, [m.id for m, _ in rows])
    return [await message_out(m, name, reactions.get(m.id), data_keys=data_keys) for m, name in rows]


async def messages_out(
    db: AsyncSession, message_ids: Iterable[int], *, data_keys: DataKeyRing
) -> dict[int, MessageOut]:
    """These messages by id, without their reactions (event frames and chat listings carry none)."""
    ids = list(message_ids)
    if not ids:
        return {}
    rows = (
        await db.execute(
            select(Message, User.username).join(User, User.id == Message.sender_id).where(Message.id.in_(ids))
        )
    ).all()
    return {m.id: await message_out(m, username, data_keys=data_keys) for m, username in rows}
