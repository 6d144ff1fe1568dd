"""Routes: chats, members, roles, invites."""

from fastapi import APIRouter, Response
from sqlalchemy.ext.asyncio import AsyncSession

from melo_protocol.wire.bounds import Id
from melo_protocol.wire.chats import (
    ChatCreate,
    ChatList,
    ChatOut,
    ChatUpdate,
    DirectChatCreate,
    InviteCreate,
    InviteList,
    InviteOut,
    MemberAdd,
    MemberList,
    MemberOut,
    OwnershipTransfer,
    RoleChange,
)
from server.chats import members, service
from server.db.models import User
from server.deps import CurrentCaller, DbSession, StateDep
from server.state import AppState

router = APIRouter(tags=["chats"])


async def _chat_out(state: AppState, db: AsyncSession, me: User, chat_id: int) -> ChatOut:
    return await service.get_chat(db, me, chat_id, data_keys=state.data_keys, presence=state.presence)


@router.post("/v1/chats/direct", status_code=201)
async def create_direct(
    body: DirectChatCreate, caller: CurrentCaller, state: StateDep, db: DbSession, response: Response
) -> ChatOut:
    chat, created = await service.create_direct(db, caller.user, body.username, bus=state.bus)
    response.status_code = 201 if created else 200
    return await _chat_out(state, db, caller.user, chat.id)


@router.post("/v1/chats", status_code=201)
async def create_chat(body: ChatCreate, caller: CurrentCaller, state: StateDep, db: DbSession) -> ChatOut:
    chat = await service.create_chat(db, caller.user, body, bus=state.bus)
    return await _chat_out(state, db, caller.user, chat.id)


@router.get("/v1/chats")
async def list_chats(caller: CurrentCaller, state: StateDep, db: DbSession) -> ChatList:
    return ChatList(chats=await service.list_chats(db, caller.user, data_keys=state.data_keys, presence=state.presence))


@router.get("/v1/chats/{chat_id}")
async def get_chat(chat_id: Id, caller: CurrentCaller, state: StateDep, db: DbSession) -> ChatOut:
    return await _chat_out(state, db, caller.user, chat_id)


@router.patch("/v1/chats/{chat_id}")
async def update_chat(chat_id: Id, body: ChatUpdate, caller: CurrentCaller, state: StateDep, db: DbSession) -> ChatOut:
    await service.update_chat(db, caller.user, chat_id, body, bus=state.bus)
    return await _chat_out(state, db, caller.user, chat_id)


@router.get("/v1/chats/{chat_id}/members")
async def list_members(chat_id: Id, caller: CurrentCaller, state: StateDep, db: DbSession) -> MemberList:
    return MemberList(members=await members.list_members(db, caller.user, chat_id, presence=state.presence))


@router.post("/v1/chats/{chat_id}/members", status_code=201)
async def add_member(chat_id: Id, body: MemberAdd, caller: CurrentCaller, state: StateDep, db: DbSession) -> MemberOut:
    return await members.add_member(db, caller.user, chat_id, body.username, bus=state.bus)


@router.delete("/v1/chats/{chat_id}/members/{username}", status_code=204)
async def remove_member(chat_id: Id, username: str, caller: CurrentCaller, state: StateDep, db: DbSession) -> Response:
    await members.remove_member(db, caller.user, chat_id, username, bus=state.bus)
    return Response(status_code=204)


@router.put("/v1/chats/{chat_id}/members/{username}/role")
async def change_role(
    chat_id: Id, username: str, body: RoleChange, caller: CurrentCaller, state: StateDep, db: DbSession
) -> MemberOut:
    return await members.change_role(db, caller.user, chat_id, username, body.role, bus=state.bus)


@router.post("/v1/chats/{chat_id}/leave", status_code=204)
async def leave(chat_id: Id, caller: CurrentCaller, state: StateDep, db: DbSession) -> Response:
    await members.leave(db, caller.user, chat_id, bus=state.bus)
    return Response(status_code=204)


@router.post("/v1/chats/{chat_id}/transfer", status_code=204)
async def transfer(
    chat_id: Id, body: OwnershipTransfer, caller: CurrentCaller, state: StateDep, db: DbSession
) -> Response:
    await members.transfer(db, caller.user, chat_id, body.username, bus=state.bus)
    return Response(status_code=204)


@router.post("/v1/chats/{chat_id}/invites", status_code=201)
async def create_invite(chat_id: Id, body: InviteCreate, caller: CurrentCaller, db: DbSession) -> InviteOut:
    return await members.create_invite(db, caller.user, chat_id, body)


@router.get("/v1/chats/{chat_id}/invites")
async def list_invites(chat_id: Id, caller: CurrentCaller, db: DbSession) -> InviteList:
    return InviteList(invites=await members.list_invites(db, caller.user, chat_id))


@router.delete("/v1/invites/{code}")
async def revoke_invite(code: str, caller: CurrentCaller, db: DbSession) -> InviteOut:
    return await members.revoke_invite(db, caller.user, code)


@router.post("/v1/invites/{code}/join")
async def join(code: str, caller: CurrentCaller, state: StateDep, db: DbSession) -> ChatOut:
    chat_id = await members.join_by_invite(db, caller.user, code, bus=state.bus)
    return await _chat_out(state, db, caller.user, chat_id)
