"""Routes: chats, members, roles, invites."""

from fastapi import APIRouter, Response

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
from server.chats import service
from server.deps import CurrentCaller, DbSession, StateDep

router = APIRouter(tags=["chats"])


@router.post("/v1/chats/direct", status_code=201)
async def create_direct(body: DirectChatCreate, caller: CurrentCaller, state: StateDep, db: DbSession,
                        response: Response) -> ChatOut:
    chat, created = await service.create_direct(state, db, caller.user, body.username)
    response.status_code = 201 if created else 200
    return await service.get_chat(state, db, caller.user, chat.id)


@router.post("/v1/chats", status_code=201)
async def create_chat(body: ChatCreate, caller: CurrentCaller, state: StateDep, db: DbSession) -> ChatOut:
    chat = await service.create_chat(state, db, caller.user, body)
    return await service.get_chat(state, db, caller.user, chat.id)


@router.get("/v1/chats")
async def list_chats(caller: CurrentCaller, state: StateDep, db: DbSession) -> ChatList:
    return ChatList(chats=await service.list_chats(state, db, caller.user))


@router.get("/v1/chats/{chat_id}")
async def get_chat(chat_id: Id, caller: CurrentCaller, state: StateDep, db: DbSession) -> ChatOut:
    return await service.get_chat(state, db, caller.user, chat_id)


@router.patch("/v1/chats/{chat_id}")
async def update_chat(chat_id: Id, body: ChatUpdate, caller: CurrentCaller, state: StateDep,
                      db: DbSession) -> ChatOut:
    await service.update_chat(state, db, caller.user, chat_id, body)
    return await service.get_chat(state, db, caller.user, chat_id)


@router.get("/v1/chats/{chat_id}/members")
async def list_members(chat_id: Id, caller: CurrentCaller, state: StateDep, db: DbSession) -> MemberList:
    return MemberList(members=await service.list_members(state, db, caller.user, chat_id))


@router.post("/v1/chats/{chat_id}/members", status_code=201)
async def add_member(chat_id: Id, body: MemberAdd, caller: CurrentCaller, state: StateDep,
                     db: DbSession) -> MemberOut:
    return await service.add_member(state, db, caller.user, chat_id, body.username)


@router.delete("/v1/chats/{chat_id}/members/{username}", status_code=204)
async def remove_member(chat_id: Id, username: str, caller: CurrentCaller, state: StateDep,
                        db: DbSession) -> Response:
    await service.remove_member(state, db, caller.user, chat_id, username)
    return Response(status_code=204)


@router.put("/v1/chats/{chat_id}/members/{username}/role")
async def change_role(chat_id: Id, username: str, body: RoleChange, caller: CurrentCaller, state: StateDep,
                      db: DbSession) -> MemberOut:
    return await service.change_role(state, db, caller.user, chat_id, username, body.role)


@router.post("/v1/chats/{chat_id}/leave", status_code=204)
async def leave(chat_id: Id, caller: CurrentCaller, state: StateDep, db: DbSession) -> Response:
    await service.leave(state, db, caller.user, chat_id)
    return Response(status_code=204)


@router.post("/v1/chats/{chat_id}/transfer", status_code=204)
async def transfer(chat_id: Id, body: OwnershipTransfer, caller: CurrentCaller, state: StateDep,
                   db: DbSession) -> Response:
    await service.transfer(state, db, caller.user, chat_id, body.username)
    return Response(status_code=204)


@router.post("/v1/chats/{chat_id}/invites", status_code=201)
async def create_invite(chat_id: Id, body: InviteCreate, caller: CurrentCaller, db: DbSession) -> InviteOut:
    return await service.create_invite(db, caller.user, chat_id, body)


@router.get("/v1/chats/{chat_id}/invites")
async def list_invites(chat_id: Id, caller: CurrentCaller, db: DbSession) -> InviteList:
    return InviteList(invites=await service.list_invites(db, caller.user, chat_id))


@router.delete("/v1/invites/{code}")
async def revoke_invite(code: str, caller: CurrentCaller, db: DbSession) -> InviteOut:
    return await service.revoke_invite(db, caller.user, code)


@router.post("/v1/invites/{code}/join")
async def join(code: str, caller: CurrentCaller, state: StateDep, db: DbSession) -> ChatOut:
    chat_id = await service.join_by_invite(state, db, caller.user, code)
    return await service.get_chat(state, db, caller.user, chat_id)
