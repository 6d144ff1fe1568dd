"""Chats (direct, group, channel): creating, changing and listing them; the membership checks every
chat service uses. Members, roles and invites are in server/chats/members.py."""

from sqlalchemy import and_, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from melo_protocol.wire import ErrorCode
from melo_protocol.wire.accounts import normalize_username
from melo_protocol.wire.chats import (
    MAX_GROUP_MEMBERS,
    ChatCreate,
    ChatKind,
    ChatOut,
    ChatUpdate,
    Role,
    UserRef,
)
from melo_protocol.wire.realtime import EventType
from server.chats import events
from server.core.data_keys import DataKeyRing
from server.core.errors import ApiError
from server.db.models import Chat, ChatMember, Message, User
from server.db.types import utcnow
from server.messages.views import messages_out
from server.realtime.bus import LocalBus, RedisBus
from server.realtime.presence import MemoryPresence, RedisPresence

ADMIN_ROLES = {Role.OWNER.value, Role.ADMIN.value}


def user_ref(user: User) -> UserRef:
    return UserRef(id=user.id, username=user.username, display_name=user.display_name)


def chat_not_found(chat_id: int) -> ApiError:
    return ApiError(ErrorCode.CHAT_NOT_FOUND, "no such chat, or you are not a member", {"chat_id": chat_id})


async def load_member(db: AsyncSession, chat_id: int, user_id: int) -> tuple[Chat, ChatMember]:
    """The chat and the caller's active membership; 404 for non-members, so ids reveal nothing."""
    row = (
        await db.execute(
            select(Chat, ChatMember)
            .join(ChatMember, ChatMember.chat_id == Chat.id)
            .where(Chat.id == chat_id, ChatMember.user_id == user_id, ChatMember.left_seq.is_(None))
        )
    ).first()
    if row is None:
        raise chat_not_found(chat_id)
    return row[0], row[1]


def require_admin(chat: Chat, member: ChatMember) -> None:
    if member.role not in ADMIN_ROLES:
        raise ApiError(
            ErrorCode.CHAT_ADMIN_REQUIRED, "only the chat's owner and admins may do this", {"chat_id": chat.id}
        )


def require_not_direct(chat: Chat) -> None:
    if chat.kind == ChatKind.DIRECT.value:
        raise ApiError(ErrorCode.WRONG_CHAT_KIND, "not possible in a direct chat", {"chat_id": chat.id})


async def find_user(db: AsyncSession, username: str) -> User:
    name = normalize_username(username.removeprefix("@"))
    user = (await db.scalars(select(User).where(User.username == name))).first() if name else None
    if user is None or user.deactivated_at is not None:
        raise ApiError(ErrorCode.USER_NOT_FOUND, "no such user", {"username": username[:64]})
    return user


def chat_summary(chat: Chat) -> dict[str, object]:
    return {
        "id": chat.id,
        "kind": chat.kind,
        "title": chat.title,
        "description": chat.description,
        "e2e": chat.e2e,
        "slow_mode_seconds": chat.slow_mode_seconds,
    }


async def create_direct(db: AsyncSession, me: User, username: str, *, bus: LocalBus | RedisBus) -> tuple[Chat, bool]:
    other = await find_user(db, username)
    if other.id == me.id:
        raise ApiError(ErrorCode.CANNOT_DM_SELF, "a direct chat needs another user")
    key = f"{min(me.id, other.id)}:{max(me.id, other.id)}"
    existing = (await db.scalars(select(Chat).where(Chat.direct_key == key))).first()
    if existing is not None:
        return existing, False
    chat = Chat(
        kind=ChatKind.DIRECT.value,
        e2e=True,
        direct_key=key,
        created_by=me.id,
        created_at=utcnow(),
        last_seq=0,
        purged_seq=0,
        slow_mode_seconds=0,
    )
    db.add(chat)
    try:
        await db.flush()
    except IntegrityError:  # the other side created it at the same moment
        await db.rollback()
        events.discard_pending(db)
        existing = (await db.scalars(select(Chat).where(Chat.direct_key == key))).first()
        assert existing is not None
        return existing, False
    ev = await events.emit(
        db,
        chat.id,
        EventType.CHAT_CREATED,
        {**chat_summary(chat), "members": [me.username, other.username]},
        member_add=[me.id, other.id],
    )
    for u in (me, other):
        db.add(
            ChatMember(
                chat_id=chat.id,
                user_id=u.id,
                role=Role.MEMBER.value,
                joined_at=utcnow(),
                joined_seq=ev.seq,
                read_seq=0,
                delivered_seq=0,
            )
        )
    await events.commit_and_publish(db, bus=bus)
    return chat, True


async def create_chat(db: AsyncSession, me: User, body: ChatCreate, *, bus: LocalBus | RedisBus) -> Chat:
    names = list(dict.fromkeys(n.removeprefix("@").lower() for n in body.members))
    users = [await find_user(db, n) for n in names]
    users = [u for u in users if u.id != me.id]
    if len(users) + 1 > MAX_GROUP_MEMBERS:
        raise ApiError(ErrorCode.GROUP_FULL, f"a chat holds at most {MAX_GROUP_MEMBERS} members", status=400)
    chat = Chat(
        kind=body.kind,
        title=body.title.strip(),
        description=body.description,
        e2e=body.kind == ChatKind.GROUP.value,
        created_by=me.id,
        created_at=utcnow(),
        last_seq=0,
        purged_seq=0,
        slow_mode_seconds=0,
    )
    db.add(chat)
    await db.flush()
    everyone = [me, *users]
    ev = await events.emit(
        db,
        chat.id,
        EventType.CHAT_CREATED,
        {**chat_summary(chat), "members": [u.username for u in everyone]},
        member_add=[u.id for u in everyone],
    )
    for u in everyone:
        db.add(
            ChatMember(
                chat_id=chat.id,
                user_id=u.id,
                role=Role.OWNER.value if u is me else Role.MEMBER.value,
                joined_at=utcnow(),
                joined_seq=ev.seq,
                read_seq=0,
                delivered_seq=0,
            )
        )
    await events.commit_and_publish(db, bus=bus)
    return chat


async def update_chat(db: AsyncSession, me: User, chat_id: int, body: ChatUpdate, *, bus: LocalBus | RedisBus) -> Chat:
    chat, member = await load_member(db, chat_id, me.id)
    require_not_direct(chat)
    require_admin(chat, member)
    changed: dict[str, object] = {}
    if body.title is not None:
        chat.title = changed["title"] = body.title.strip()
    if "description" in body.model_fields_set:
        chat.description = changed["description"] = body.description
    if body.slow_mode_seconds is not None:
        chat.slow_mode_seconds = changed["slow_mode_seconds"] = body.slow_mode_seconds
    if changed:
        await events.emit(db, chat.id, EventType.CHAT_UPDATED, {**changed, "by": me.username})
    await events.commit_and_publish(db, bus=bus)
    return chat


async def member_count(db: AsyncSession, chat_ids: list[int]) -> dict[int, int]:
    if not chat_ids:
        return {}
    rows = await db.execute(
        select(ChatMember.chat_id, func.count())
        .where(ChatMember.chat_id.in_(chat_ids), ChatMember.left_seq.is_(None))
        .group_by(ChatMember.chat_id)
    )
    return {int(c): int(n) for c, n in rows.all()}


async def list_chats(
    db: AsyncSession,
    me: User,
    chat_id: int | None = None,
    *,
    data_keys: DataKeyRing,
    presence: MemoryPresence | RedisPresence,
) -> list[ChatOut]:
    """The caller's chats (or only ``chat_id``) with their counts, last message and, in a DM, the peer."""
    query = (
        select(Chat, ChatMember)
        .join(ChatMember, ChatMember.chat_id == Chat.id)
        .where(ChatMember.user_id == me.id, ChatMember.left_seq.is_(None))
        .order_by(Chat.id)
    )
    if chat_id is not None:
        query = query.where(Chat.id == chat_id)
    rows = (await db.execute(query)).all()
    ids = [c.id for c, _ in rows]
    if not ids:
        return []
    counts = await member_count(db, ids)
    unread_rows = await db.execute(
        select(Message.chat_id, func.count())
        .join(ChatMember, and_(ChatMember.chat_id == Message.chat_id, ChatMember.user_id == me.id))
        .where(
            Message.chat_id.in_(ids),
            Message.seq > ChatMember.read_seq,
            Message.sender_id != me.id,
            Message.deleted_at.is_(None),
        )
        .group_by(Message.chat_id)
    )
    unread = {int(c): int(n) for c, n in unread_rows.all()}
    last_ids = [
        int(i)
        for (i,) in (
            await db.execute(
                select(func.max(Message.id))
                .where(Message.chat_id.in_(ids), Message.deleted_at.is_(None))
                .group_by(Message.chat_id)
            )
        ).all()
    ]
    last = {m.chat_id: m for m in (await messages_out(db, last_ids, data_keys=data_keys)).values()}
    peers: dict[int, UserRef] = {}
    direct_ids = [c.id for c, _ in rows if c.kind == ChatKind.DIRECT.value]
    if direct_ids:
        for cid, user in (
            await db.execute(
                select(ChatMember.chat_id, User)
                .join(User, User.id == ChatMember.user_id)
                .where(ChatMember.chat_id.in_(direct_ids), ChatMember.user_id != me.id)
            )
        ).all():
            peers[int(cid)] = user_ref(user)
    if peers:
        online = await presence.online([p.id for p in peers.values()])
        for peer in peers.values():
            peer.online = peer.id in online
    return [
        ChatOut(
            id=c.id,
            kind=ChatKind(c.kind),
            title=c.title if c.kind != ChatKind.DIRECT.value else None,
            description=c.description,
            e2e=c.e2e,
            slow_mode_seconds=c.slow_mode_seconds,
            message_ttl_seconds=c.message_ttl_seconds,
            created_at=c.created_at,
            role=Role(m.role),
            member_count=counts.get(c.id, 0),
            last_seq=c.last_seq,
            purged_seq=c.purged_seq,
            unread_count=unread.get(c.id, 0),
            peer=peers.get(c.id),
            last_message=last.get(c.id),
        )
        for c, m in rows
    ]


async def get_chat(
    db: AsyncSession, me: User, chat_id: int, *, data_keys: DataKeyRing, presence: MemoryPresence | RedisPresence
) -> ChatOut:
    chats = await list_chats(db, me, chat_id, data_keys=data_keys, presence=presence)
    if not chats:
        raise chat_not_found(chat_id)
    return chats[0]


async def users_sharing_chats(db: AsyncSession, user_id: int) -> list[int]:
    mine = select(ChatMember.chat_id).where(ChatMember.user_id == user_id, ChatMember.left_seq.is_(None))
    rows = await db.scalars(
        select(ChatMember.user_id)
        .where(ChatMember.chat_id.in_(mine), ChatMember.left_seq.is_(None), ChatMember.user_id != user_id)
        .distinct()
    )
    return list(rows.all())
