"""Chats (direct, group, channel), membership and roles, invites."""

from datetime import timedelta

from sqlalchemy import and_, func, or_, select, update
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
    InviteCreate,
    InviteOut,
    MemberOut,
    Role,
    UserRef,
)
from melo_protocol.wire.realtime import EventType
from server.chats import events
from server.core.errors import ApiError
from server.core.secrets import shareable_code
from server.db.models import Chat, ChatMember, Invite, Message, User
from server.db.types import utcnow
from server.messages.views import messages_out
from server.state import AppState

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


def _chat_summary(chat: Chat) -> dict[str, object]:
    return {
        "id": chat.id,
        "kind": chat.kind,
        "title": chat.title,
        "description": chat.description,
        "e2e": chat.e2e,
        "slow_mode_seconds": chat.slow_mode_seconds,
    }


async def create_direct(state: AppState, db: AsyncSession, me: User, username: str) -> tuple[Chat, bool]:
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
        {**_chat_summary(chat), "members": [me.username, other.username]},
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
    await events.commit_and_publish(db, bus=state.bus)
    return chat, True


async def create_chat(state: AppState, db: AsyncSession, me: User, body: ChatCreate) -> Chat:
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
        {**_chat_summary(chat), "members": [u.username for u in everyone]},
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
    await events.commit_and_publish(db, bus=state.bus)
    return chat


async def update_chat(state: AppState, db: AsyncSession, me: User, chat_id: int, body: ChatUpdate) -> Chat:
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
    await events.commit_and_publish(db, bus=state.bus)
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


async def list_chats(state: AppState, db: AsyncSession, me: User, chat_id: int | None = None) -> list[ChatOut]:
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
    last = {m.chat_id: m for m in (await messages_out(db, last_ids, data_keys=state.data_keys)).values()}
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
        online = await state.presence.online([p.id for p in peers.values()])
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


async def get_chat(state: AppState, db: AsyncSession, me: User, chat_id: int) -> ChatOut:
    chats = await list_chats(state, db, me, chat_id)
    if not chats:
        raise chat_not_found(chat_id)
    return chats[0]


async def list_members(state: AppState, db: AsyncSession, me: User, chat_id: int) -> list[MemberOut]:
    await load_member(db, chat_id, me.id)
    rows = (
        await db.execute(
            select(ChatMember, User)
            .join(User, User.id == ChatMember.user_id)
            .where(ChatMember.chat_id == chat_id, ChatMember.left_seq.is_(None))
            .order_by(ChatMember.joined_at, User.username)
        )
    ).all()
    online = await state.presence.online([u.id for _, u in rows]) if rows else set()
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


async def _join(state: AppState, db: AsyncSession, chat: Chat, user: User, by: User | None) -> None:
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
            "chat": _chat_summary(chat),
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


async def add_member(state: AppState, db: AsyncSession, me: User, chat_id: int, username: str) -> MemberOut:
    chat, member = await load_member(db, chat_id, me.id)
    require_not_direct(chat)
    require_admin(chat, member)
    user = await find_user(db, username)
    await _join(state, db, chat, user, me)
    await events.commit_and_publish(db, bus=state.bus)
    return MemberOut(user=user_ref(user), role=Role.MEMBER, joined_at=utcnow())


async def _part(db: AsyncSession, chat: Chat, row: ChatMember, user: User, type_: EventType, by: User) -> None:
    ev = await events.emit(
        db, chat.id, type_, {"user": user_ref(user).model_dump(), "by": by.username}, member_remove=[user.id]
    )
    row.left_seq = ev.seq


async def remove_member(state: AppState, db: AsyncSession, me: User, chat_id: int, username: str) -> None:
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
    await events.commit_and_publish(db, bus=state.bus)


async def leave(state: AppState, db: AsyncSession, me: User, chat_id: int) -> None:
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
    await events.commit_and_publish(db, bus=state.bus)


async def change_role(
    state: AppState, db: AsyncSession, me: User, chat_id: int, username: str, role: Role
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
    await events.commit_and_publish(db, bus=state.bus)
    return MemberOut(user=user_ref(user), role=role, joined_at=row.joined_at)


async def transfer(state: AppState, db: AsyncSession, me: User, chat_id: int, username: str) -> None:
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
    await events.commit_and_publish(db, bus=state.bus)


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


async def join_by_invite(state: AppState, db: AsyncSession, me: User, code: str) -> int:
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
    await _join(state, db, chat, me, None)
    await events.commit_and_publish(db, bus=state.bus)
    return chat.id


async def active_chat_ids(db: AsyncSession, user_id: int) -> list[int]:
    return list(
        (
            await db.scalars(
                select(ChatMember.chat_id).where(ChatMember.user_id == user_id, ChatMember.left_seq.is_(None))
            )
        ).all()
    )


async def users_sharing_chats(db: AsyncSession, user_id: int) -> list[int]:
    mine = select(ChatMember.chat_id).where(ChatMember.user_id == user_id, ChatMember.left_seq.is_(None))
    rows = await db.scalars(
        select(ChatMember.user_id)
        .where(ChatMember.chat_id.in_(mine), ChatMember.left_seq.is_(None), ChatMember.user_id != user_id)
        .distinct()
    )
    return list(rows.all())
