"""Chat membership: members and their roles, joining, leaving and removal, and invites."""

from datetime import timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from melo_protocol.wire import ErrorCode
from melo_protocol.wire.chats import MAX_GROUP_MEMBERS, InviteCreate, InviteOut, MemberOut, Role, UserRef
from melo_protocol.wire.realtime import EventType
from server.chats import events
from server.chats.service import (
    chat_summary,
    find_user,
    load_member,
    member_count,
    require_admin,
    require_not_direct,
    user_ref,
)
from server.core.errors import ApiError
from server.core.secrets import shareable_code
from server.db.models import Chat, ChatMember, Invite, User
from server.db.types import utcnow
from server.realtime.bus import LocalBus, RedisBus
from server.realtime.presence import MemoryPresence, RedisPresence


async def list_members(
    db: AsyncSession, me: User, chat_id: int, *, presence: MemoryPresence | RedisPresence
) -> list[MemberOut]:
    await load_member(db, chat_id, me.id)
    rows = (
        await db.execute(
            select(ChatMember, User)
            .join(User, User.id == ChatMember.user_id)
            .where(ChatMember.chat_id == chat_id, ChatMember.left_seq.is_(None))
            .order_by(ChatMember.joined_at, User.username)
        )
    ).all()
    online = await presence.online([u.id for _, u in rows]) if rows else set()
    return [
        MemberOut(
            user=UserRef(id=u.id, username=u.username, display_name=u.display_name, online=u.id in online),
            role=Role(m.role),
            joined_at=m.joined_at,
            read_seq=m.read_seq,
            delivered_seq=m.delivered_seq,
        )
        for m, u in rows
    ]


async def _join(db: AsyncSession, chat: Chat, user: User, by: User | None) -> None:
    """Add or re-add a member in the current transaction (emits member.joined)."""
    # Take the chat's row lock (the event counter) before reading membership, so concurrent adds and
    # joins are decided one after another: they cannot together pass the limit or add one user twice.
    # A refusal rolls the bump back.
    username = user.username  # the rollback below expires loaded objects
    seq = await events.next_seq(db, chat.id)
    row = await db.get(ChatMember, (chat.id, user.id), populate_existing=True)
    if row is not None and row.left_seq is None:
        await db.rollback()
        raise ApiError(ErrorCode.ALREADY_MEMBER, "already a member", {"username": username})
    if (await member_count(db, [chat.id])).get(chat.id, 0) >= MAX_GROUP_MEMBERS:
        await db.rollback()
        raise ApiError(ErrorCode.GROUP_FULL, f"a chat holds at most {MAX_GROUP_MEMBERS} members")
    ev = await events.emit(
        db,
        chat.id,
        EventType.MEMBER_JOINED,
        {
            "user": user_ref(user).model_dump(),
            "role": Role.MEMBER.value,
            "by": by.username if by else None,
            "chat": chat_summary(chat),
        },
        member_add=[user.id],
        seq=seq,
    )
    if row is None:
        db.add(
            ChatMember(
                chat_id=chat.id,
                user_id=user.id,
                role=Role.MEMBER.value,
                joined_at=utcnow(),
                joined_seq=ev.seq,
                read_seq=ev.seq,
                delivered_seq=ev.seq,
            )
        )
    else:
        row.left_seq, row.role, row.joined_at, row.joined_seq = None, Role.MEMBER.value, utcnow(), ev.seq
        row.read_seq = row.delivered_seq = ev.seq


async def add_member(db: AsyncSession, me: User, chat_id: int, username: str, *, bus: LocalBus | RedisBus) -> MemberOut:
    chat, member = await load_member(db, chat_id, me.id)
    require_not_direct(chat)
    require_admin(chat, member)
    user = await find_user(db, username)
    await _join(db, chat, user, me)
    await events.commit_and_publish(db, bus=bus)
    return MemberOut(user=user_ref(user), role=Role.MEMBER, joined_at=utcnow())


async def _part(db: AsyncSession, chat: Chat, row: ChatMember, user: User, type_: EventType, by: User) -> None:
    ev = await events.emit(
        db, chat.id, type_, {"user": user_ref(user).model_dump(), "by": by.username}, member_remove=[user.id]
    )
    row.left_seq = ev.seq


async def remove_member(db: AsyncSession, me: User, chat_id: int, username: str, *, bus: LocalBus | RedisBus) -> None:
    chat, member = await load_member(db, chat_id, me.id)
    require_not_direct(chat)
    require_admin(chat, member)
    user = await find_user(db, username)
    if user.id == me.id:
        raise ApiError(ErrorCode.CANNOT_TARGET_SELF, "use leave to leave a chat")
    row = await db.get(ChatMember, (chat.id, user.id))
    if row is None or row.left_seq is not None:
        raise ApiError(ErrorCode.NOT_A_MEMBER, "not a member of this chat", {"username": user.username})
    # owners can be removed by nobody; admins only by an owner
    if row.role == Role.OWNER.value or (row.role == Role.ADMIN.value and member.role != Role.OWNER.value):
        raise ApiError(ErrorCode.FORBIDDEN, "you cannot remove this member", {"username": user.username})
    await _part(db, chat, row, user, EventType.MEMBER_REMOVED, me)
    await events.commit_and_publish(db, bus=bus)


async def leave(db: AsyncSession, me: User, chat_id: int, *, bus: LocalBus | RedisBus) -> None:
    chat, member = await load_member(db, chat_id, me.id)
    require_not_direct(chat)
    if member.role == Role.OWNER.value:
        owners = (
            await db.execute(
                select(func.count()).where(
                    ChatMember.chat_id == chat.id, ChatMember.role == Role.OWNER.value, ChatMember.left_seq.is_(None)
                )
            )
        ).scalar_one()
        others = (await member_count(db, [chat.id])).get(chat.id, 0) - 1
        if owners <= 1 and others > 0:
            raise ApiError(ErrorCode.LAST_OWNER, "transfer ownership before leaving", {"chat_id": chat.id})
    await _part(db, chat, member, me, EventType.MEMBER_LEFT, me)
    await events.commit_and_publish(db, bus=bus)


async def change_role(
    db: AsyncSession, me: User, chat_id: int, username: str, role: Role, *, bus: LocalBus | RedisBus
) -> MemberOut:
    chat, member = await load_member(db, chat_id, me.id)
    require_not_direct(chat)
    if member.role != Role.OWNER.value:
        raise ApiError(ErrorCode.CHAT_ADMIN_REQUIRED, "only an owner changes roles", {"chat_id": chat.id})
    if role == Role.OWNER:
        raise ApiError(ErrorCode.VALIDATION_ERROR, "use transfer to hand over ownership", status=400)
    user = await find_user(db, username)
    row = await db.get(ChatMember, (chat.id, user.id))
    if row is None or row.left_seq is not None:
        raise ApiError(ErrorCode.NOT_A_MEMBER, "not a member of this chat", {"username": user.username})
    if user.id == me.id:
        raise ApiError(ErrorCode.CANNOT_TARGET_SELF, "use transfer to hand over ownership")
    row.role = role.value
    await events.emit(
        db,
        chat.id,
        EventType.MEMBER_ROLE_CHANGED,
        {"user": user_ref(user).model_dump(), "role": role.value, "by": me.username},
    )
    await events.commit_and_publish(db, bus=bus)
    return MemberOut(user=user_ref(user), role=role, joined_at=row.joined_at)


async def transfer(db: AsyncSession, me: User, chat_id: int, username: str, *, bus: LocalBus | RedisBus) -> None:
    chat, member = await load_member(db, chat_id, me.id)
    require_not_direct(chat)
    if member.role != Role.OWNER.value:
        raise ApiError(ErrorCode.CHAT_ADMIN_REQUIRED, "only the owner can transfer ownership")
    user = await find_user(db, username)
    row = await db.get(ChatMember, (chat.id, user.id))
    if row is None or row.left_seq is not None:
        raise ApiError(ErrorCode.NOT_A_MEMBER, "not a member of this chat", {"username": user.username})
    if user.id == me.id:
        raise ApiError(ErrorCode.CANNOT_TARGET_SELF, "you already own this chat")
    row.role = Role.OWNER.value
    member.role = Role.ADMIN.value
    for u, r in ((user, Role.OWNER), (me, Role.ADMIN)):
        await events.emit(
            db,
            chat.id,
            EventType.MEMBER_ROLE_CHANGED,
            {"user": user_ref(u).model_dump(), "role": r.value, "by": me.username},
        )
    await events.commit_and_publish(db, bus=bus)


# ---- invites ---------------------------------------------------------------------------------------
def invite_out(row: Invite) -> InviteOut:
    return InviteOut(
        code=row.code,
        chat_id=row.chat_id,
        created_at=row.created_at,
        expires_at=row.expires_at,
        max_uses=row.max_uses,
        uses=row.uses,
        revoked=row.revoked_at is not None,
    )


async def create_invite(db: AsyncSession, me: User, chat_id: int, body: InviteCreate) -> InviteOut:
    chat, member = await load_member(db, chat_id, me.id)
    require_not_direct(chat)
    require_admin(chat, member)
    now = utcnow()
    row = Invite(
        code=shareable_code(12),
        chat_id=chat.id,
        created_by=me.id,
        created_at=now,
        expires_at=now + timedelta(seconds=body.expires_in_seconds) if body.expires_in_seconds else None,
        max_uses=body.max_uses,
        uses=0,
    )
    db.add(row)
    await db.commit()
    return invite_out(row)


async def list_invites(db: AsyncSession, me: User, chat_id: int) -> list[InviteOut]:
    chat, member = await load_member(db, chat_id, me.id)
    require_admin(chat, member)
    rows = await db.scalars(select(Invite).where(Invite.chat_id == chat.id).order_by(Invite.created_at.desc()))
    return [invite_out(r) for r in rows.all()]


async def revoke_invite(db: AsyncSession, me: User, code: str) -> InviteOut:
    row = await db.get(Invite, code[:32])
    if row is None:
        raise ApiError(ErrorCode.INVITE_NOT_FOUND, "no such invite")
    try:
        chat, member = await load_member(db, row.chat_id, me.id)
    except ApiError:
        raise ApiError(ErrorCode.INVITE_NOT_FOUND, "no such invite") from None
    require_admin(chat, member)
    row.revoked_at = row.revoked_at or utcnow()
    await db.commit()
    return invite_out(row)


async def join_by_invite(db: AsyncSession, me: User, code: str, *, bus: LocalBus | RedisBus) -> int:
    row = await db.get(Invite, code[:32])
    invalid = ApiError(ErrorCode.INVITE_INVALID, "this invite is unknown, expired, revoked or used up")
    if row is None:
        raise invalid
    existing = await db.get(ChatMember, (row.chat_id, me.id))
    if existing is not None and existing.left_seq is None:
        return row.chat_id  # already in: spend no use
    now = utcnow()
    used = await db.execute(
        update(Invite)
        .where(
            Invite.code == row.code,
            Invite.revoked_at.is_(None),
            or_(Invite.expires_at.is_(None), Invite.expires_at > now),
            or_(Invite.max_uses.is_(None), Invite.uses < Invite.max_uses),
        )
        .values(uses=Invite.uses + 1)
    )
    if used.rowcount != 1:  # type: ignore[attr-defined]
        await db.rollback()
        raise invalid
    chat = await db.get(Chat, row.chat_id)
    assert chat is not None
    await _join(db, chat, me, None)
    await events.commit_and_publish(db, bus=bus)
    return chat.id
