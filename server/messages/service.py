"""Messages: send (idempotent), edit, delete (tombstone), reactions, pins, history, receipts."""

from datetime import timedelta
from typing import Protocol

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from melo_protocol.wire import ErrorCode
from melo_protocol.wire.chats import (
    HISTORY_MAX_LIMIT,
    ChatKind,
    E2EEnvelope,
    MessageEdit,
    MessageOut,
    MessagePage,
    MessageSend,
    Role,
)
from melo_protocol.wire.keys import recipient_devices_digest
from melo_protocol.wire.realtime import EventType
from server.chats import events
from server.chats.service import ADMIN_ROLES, load_member
from server.core.caller import Caller
from server.core.data_keys import DataKeyRing
from server.core.errors import ApiError
from server.db.models import Chat, ChatMember, DeviceKeys, Message, MessageTxn, Reaction, User
from server.db.types import utcnow
from server.messages.views import message_out, page_out, reactions_for
from server.push.service import PushService
from server.realtime.bus import LocalBus, RedisBus


class Content(Protocol):
    """What a post carries: text, or an E2E envelope (a message sent now, an edit, a scheduled one)."""

    @property
    def text(self) -> str | None: ...

    @property
    def e2e(self) -> E2EEnvelope | None: ...


def check_content(chat: Chat, body: Content, *, e2e_hint: str = "send an e2e envelope") -> None:
    """An E2E chat takes envelopes only, another chat text only."""
    if chat.e2e and body.text is not None:
        raise ApiError(ErrorCode.E2E_REQUIRED, f"this chat is end-to-end encrypted: {e2e_hint}", {"chat_id": chat.id})
    if not chat.e2e and body.e2e is not None:
        raise ApiError(
            ErrorCode.E2E_NOT_ALLOWED, "this chat is not end-to-end encrypted: send text", {"chat_id": chat.id}
        )


def check_post(chat: Chat, member: ChatMember, body: Content, *, e2e_hint: str = "send an e2e envelope") -> None:
    """The rules of every post, sent now or scheduled: only a channel's owner and admins post in it, and the
    content suits the chat (``check_content``)."""
    if chat.kind == ChatKind.CHANNEL.value and member.role not in ADMIN_ROLES:
        raise ApiError(
            ErrorCode.CHANNEL_READ_ONLY, "only the channel's owner and admins post here", {"chat_id": chat.id}
        )
    check_content(chat, body, e2e_hint=e2e_hint)


async def _check_recipients(db: AsyncSession, chat: Chat, body: MessageSend | MessageEdit) -> None:
    """Refuse an E2E message encrypted for other member devices than the chat has now.

    Only when the client names them (``recipient_devices``): it may then encrypt for a cached device
    list and still never post a message a current member device lacks the key for. Call under the
    chat's row lock (``events.next_seq``): membership changes take it too, so they cannot slip between.
    """
    if body.e2e is None or body.recipient_devices is None:
        return
    rows = (
        await db.execute(
            select(DeviceKeys.user_id, DeviceKeys.device_id, DeviceKeys.curve25519)
            .join(ChatMember, ChatMember.user_id == DeviceKeys.user_id)
            .join(User, User.id == DeviceKeys.user_id)
            .where(ChatMember.chat_id == chat.id, ChatMember.left_seq.is_(None), User.deactivated_at.is_(None))
        )
    ).all()
    if recipient_devices_digest((int(u), d, c) for u, d, c in rows) != body.recipient_devices:
        raise ApiError(
            ErrorCode.RECIPIENTS_CHANGED,
            "the chat's members or their devices changed since this message was encrypted; "
            "fetch them again and re-encrypt",
            {"chat_id": chat.id},
        )


async def _store_content(
    chat: Chat, body: MessageSend | MessageEdit, *, data_keys: DataKeyRing
) -> tuple[str, str, str | None]:
    """(kind, stored body, data key id). Text is sealed at rest; E2E envelopes are stored as given."""
    if body.e2e is not None:
        return "e2e", body.e2e.model_dump_json(), None
    assert body.text is not None
    await data_keys.refresh_if_stale()  # a rotation on another worker: seal with the new key
    key_id, sealed = data_keys.seal(body.text, str(chat.id).encode())
    return "text", sealed, key_id


async def _existing_send(
    db: AsyncSession, session_id: str, txn_id: str, *, data_keys: DataKeyRing
) -> MessageOut | None:
    row = (
        await db.execute(
            select(Message, User.username)
            .join(MessageTxn, MessageTxn.message_id == Message.id)
            .join(User, User.id == Message.sender_id)
            .where(MessageTxn.session_id == session_id, MessageTxn.txn_id == txn_id)
        )
    ).first()
    return await message_out(row[0], row[1], data_keys=data_keys) if row else None


async def send(
    db: AsyncSession,
    caller: Caller,
    chat_id: int,
    body: MessageSend,
    *,
    data_keys: DataKeyRing,
    bus: LocalBus | RedisBus,
    push: PushService | None,
) -> MessageOut:
    """Post a message (idempotent by the session's ``txn_id``); after commit its event goes on ``bus`` and
    ``push`` (when the server has one) notifies offline members."""
    sid = caller.session_id
    prior = await _existing_send(db, sid, body.txn_id, data_keys=data_keys)
    if prior is not None:
        return prior  # a retry: the first result, nothing new
    chat, member = await load_member(db, chat_id, caller.user.id)
    check_post(chat, member, body)
    if body.reply_to is not None:
        target = await db.get(Message, body.reply_to)
        if target is None or target.chat_id != chat.id:
            raise ApiError(
                ErrorCode.REPLY_NOT_FOUND,
                "the message replied to is not in this chat",
                {"reply_to": body.reply_to},
            )
    seq = await events.next_seq(db, chat.id)  # takes the chat's row lock until commit
    try:
        await _check_recipients(db, chat, body)
    except ApiError:
        await db.rollback()
        events.discard_pending(db)
        raise
    now = utcnow()
    if chat.slow_mode_seconds and member.role == Role.MEMBER.value:
        await db.refresh(member)  # read again under the lock: two racing posts cannot both pass
        if member.last_post_at is not None:
            allowed_at = member.last_post_at + timedelta(seconds=chat.slow_mode_seconds)
            if now < allowed_at:
                await db.rollback()
                events.discard_pending(db)
                wait = max(1, int((allowed_at - now).total_seconds() + 0.999))
                raise ApiError(
                    ErrorCode.SLOW_MODE,
                    f"slow mode: you can post again in {wait} s",
                    {"retry_after": wait, "allowed_at": allowed_at.isoformat()},
                    headers={"Retry-After": str(wait)},
                )
    kind, stored, key_id = await _store_content(chat, body, data_keys=data_keys)
    msg = Message(
        chat_id=chat.id,
        seq=seq,
        sender_id=caller.user.id,
        sender_device=caller.claims.device_id,
        kind=kind,
        body=stored,
        key_id=key_id,
        reply_to=body.reply_to,
        created_at=now,
    )
    db.add(msg)
    await db.flush()
    db.add(MessageTxn(session_id=sid, txn_id=body.txn_id, message_id=msg.id, created_at=now))
    member.last_post_at = now
    out = await message_out(msg, caller.user.username, data_keys=data_keys)
    await events.emit(db, chat.id, EventType.MESSAGE_CREATED, out.model_dump(mode="json"), message_id=msg.id, seq=seq)
    try:
        await events.commit_and_publish(db, bus=bus)
    except IntegrityError:
        # the same transaction id raced us and won: answer with its message
        await db.rollback()
        events.discard_pending(db)
        prior = await _existing_send(db, sid, body.txn_id, data_keys=data_keys)
        if prior is None:
            raise
        return prior
    if push is not None:
        push.message_sent(out)  # offline members get a web push, off the request path
    return out


async def _load_message(db: AsyncSession, chat_id: int, message_id: int) -> Message:
    msg = await db.get(Message, message_id)
    if msg is None or msg.chat_id != chat_id:
        raise ApiError(
            ErrorCode.MESSAGE_NOT_FOUND,
            "no such message in this chat",
            {"chat_id": chat_id, "message_id": message_id},
        )
    return msg


async def edit(
    db: AsyncSession,
    caller: Caller,
    chat_id: int,
    message_id: int,
    body: MessageEdit,
    *,
    data_keys: DataKeyRing,
    bus: LocalBus | RedisBus,
) -> MessageOut:
    chat, _member = await load_member(db, chat_id, caller.user.id)
    msg = await _load_message(db, chat.id, message_id)
    if msg.sender_id != caller.user.id:
        raise ApiError(ErrorCode.NOT_AUTHOR, "only the author edits a message")
    if msg.deleted_at is not None:
        raise ApiError(ErrorCode.MESSAGE_NOT_FOUND, "this message was deleted", {"message_id": message_id})
    check_content(chat, body)
    await _check_recipients(db, chat, body)
    msg.kind, msg.body, msg.key_id = await _store_content(chat, body, data_keys=data_keys)
    msg.edited_at = utcnow()
    # the edited message as clients should now show it: its reactions stay
    reactions = (await reactions_for(db, [msg.id])).get(msg.id)
    out = await message_out(msg, caller.user.username, reactions, data_keys=data_keys)
    await events.emit(db, chat.id, EventType.MESSAGE_EDITED, out.model_dump(mode="json"), message_id=msg.id)
    await events.commit_and_publish(db, bus=bus)
    return out


async def delete_message(
    db: AsyncSession, caller: Caller, chat_id: int, message_id: int, *, bus: LocalBus | RedisBus
) -> None:
    chat, member = await load_member(db, chat_id, caller.user.id)
    msg = await _load_message(db, chat.id, message_id)
    is_admin = member.role in ADMIN_ROLES and chat.kind != ChatKind.DIRECT.value
    if msg.sender_id != caller.user.id and not is_admin:
        raise ApiError(ErrorCode.NOT_AUTHOR, "only the author or a chat admin deletes a message")
    if msg.deleted_at is not None:
        return  # already a tombstone
    msg.deleted_at = utcnow()
    msg.body = None
    msg.key_id = None
    msg.pinned_at = None
    # a tombstone keeps no content: its reactions go with it
    await db.execute(delete(Reaction).where(Reaction.message_id == msg.id))
    await events.emit(
        db, chat.id, EventType.MESSAGE_DELETED, {"message_id": msg.id, "by": caller.user.username}, message_id=msg.id
    )
    await events.commit_and_publish(db, bus=bus)


async def react(
    db: AsyncSession,
    caller: Caller,
    chat_id: int,
    message_id: int,
    emoji: str,
    *,
    remove: bool,
    bus: LocalBus | RedisBus,
) -> None:
    """``emoji`` is a checked ``ReactionKey`` (one emoji, fully qualified): the REST path and the WebSocket
    command validate it at the edge."""
    chat, _member = await load_member(db, chat_id, caller.user.id)
    msg = await _load_message(db, chat.id, message_id)
    if msg.deleted_at is not None:
        raise ApiError(ErrorCode.MESSAGE_NOT_FOUND, "this message was deleted", {"message_id": message_id})
    data = {"message_id": msg.id, "user": caller.user.username, "emoji": emoji}
    if remove:
        gone = await db.execute(
            delete(Reaction).where(
                Reaction.message_id == msg.id, Reaction.user_id == caller.user.id, Reaction.emoji == emoji
            )
        )
        if gone.rowcount == 0:  # type: ignore[attr-defined]
            await db.rollback()
            return
        await events.emit(db, chat.id, EventType.REACTION_REMOVED, data, message_id=msg.id)
    else:
        if await db.get(Reaction, (msg.id, caller.user.id, emoji)) is not None:
            return  # one per emoji per user
        db.add(Reaction(message_id=msg.id, user_id=caller.user.id, emoji=emoji, created_at=utcnow()))
        await events.emit(db, chat.id, EventType.REACTION_ADDED, data, message_id=msg.id)
    try:
        await events.commit_and_publish(db, bus=bus)
    except IntegrityError:
        await db.rollback()  # a concurrent identical reaction won; the result is the same
        events.discard_pending(db)


async def pin(
    db: AsyncSession,
    caller: Caller,
    chat_id: int,
    message_id: int,
    *,
    unpin: bool = False,
    bus: LocalBus | RedisBus,
) -> None:
    chat, member = await load_member(db, chat_id, caller.user.id)
    if chat.kind != ChatKind.DIRECT.value and member.role not in ADMIN_ROLES:
        raise ApiError(ErrorCode.CHAT_ADMIN_REQUIRED, "only the chat's owner and admins pin messages")
    msg = await _load_message(db, chat.id, message_id)
    if msg.deleted_at is not None:
        raise ApiError(ErrorCode.MESSAGE_NOT_FOUND, "this message was deleted", {"message_id": message_id})
    if (msg.pinned_at is None) == unpin:
        return  # already in the asked state
    msg.pinned_at = None if unpin else utcnow()
    await events.emit(
        db,
        chat.id,
        EventType.MESSAGE_UNPINNED if unpin else EventType.MESSAGE_PINNED,
        {"message_id": msg.id, "by": caller.user.username},
        message_id=msg.id,
    )
    await events.commit_and_publish(db, bus=bus)


async def pinned(db: AsyncSession, caller: Caller, chat_id: int, *, data_keys: DataKeyRing) -> list[MessageOut]:
    chat, _member = await load_member(db, chat_id, caller.user.id)
    rows = (
        await db.execute(
            select(Message, User.username)
            .join(User, User.id == Message.sender_id)
            .where(Message.chat_id == chat.id, Message.pinned_at.is_not(None), Message.deleted_at.is_(None))
            .order_by(Message.pinned_at.desc())
        )
    ).all()
    return await page_out(db, [(m, n) for m, n in rows], data_keys=data_keys)


async def history(
    db: AsyncSession,
    caller: Caller,
    chat_id: int,
    *,
    before: int | None,
    after: int | None,
    limit: int,
    data_keys: DataKeyRing,
) -> MessagePage:
    chat, member = await load_member(db, chat_id, caller.user.id)
    limit = max(1, min(limit, HISTORY_MAX_LIMIT))
    query = select(Message, User.username).join(User, User.id == Message.sender_id).where(Message.chat_id == chat.id)
    if chat.kind == ChatKind.GROUP.value:
        # E2E groups: a later member could not decrypt earlier messages; do not hand them out
        query = query.where(Message.seq >= member.joined_seq)
    if before is not None:
        query = query.where(Message.seq < before)
    if after is not None:  # forwards from after (up to before, when both are given)
        query = query.where(Message.seq > after).order_by(Message.seq).limit(limit + 1)
        rows = list((await db.execute(query)).all())
        has_more = len(rows) > limit
        rows = rows[:limit]
    else:
        query = query.order_by(Message.seq.desc()).limit(limit + 1)
        rows = list((await db.execute(query)).all())
        has_more = len(rows) > limit
        rows = list(reversed(rows[:limit]))
    page = await page_out(db, [(m, n) for m, n in rows], data_keys=data_keys)
    return MessagePage(messages=page, has_more=has_more, purged_seq=chat.purged_seq)


async def mark(
    db: AsyncSession, caller: Caller, chat_id: int, seq: int, *, read: bool, bus: LocalBus | RedisBus
) -> None:
    """Read (up to seq) or delivered receipts; only forward moves emit a receipt event."""
    chat, member = await load_member(db, chat_id, caller.user.id)
    # Clamp to the last message, not the last event: receipts are events themselves, and clients that
    # mark "the last seq I saw" would otherwise answer each other's receipts without end.
    last_message = (await db.execute(select(func.max(Message.seq)).where(Message.chat_id == chat.id))).scalar()
    seq = min(seq, int(last_message or 0))
    changed = False
    if read and seq > member.read_seq:
        member.read_seq = seq
        changed = True
    if seq > member.delivered_seq:
        member.delivered_seq = seq
        changed = True
    if not changed:
        await db.rollback()
        return
    if chat.kind != ChatKind.CHANNEL.value:  # broadcast channels keep counters, not receipts
        await events.emit(
            db,
            chat.id,
            EventType.RECEIPT,
            {"user": caller.user.username, "read_seq": member.read_seq, "delivered_seq": member.delivered_seq},
        )
    await events.commit_and_publish(db, bus=bus)
