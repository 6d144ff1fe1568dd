"""Routes: messages, reactions, pins, history, read markers."""

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from melo_protocol.wire.bounds import Id, Seq
from melo_protocol.wire.chats import (
    HISTORY_MAX_LIMIT,
    MessageEdit,
    MessageOut,
    MessagePage,
    MessageSend,
    PinRequest,
    ReactionKey,
    ReadMark,
)
from server.deps import CurrentCaller, DbSession, StateDep
from server.messages import service

router = APIRouter(tags=["messages"])
Emoji = Annotated[ReactionKey, Path(min_length=1, max_length=32, description="one emoji, e.g. 👍")]


@router.post("/v1/chats/{chat_id}/messages", status_code=201)
async def send(chat_id: Id, body: MessageSend, caller: CurrentCaller, state: StateDep, db: DbSession) -> MessageOut:
    """A retry with the same ``txn_id`` (same session) answers with the first message."""
    return await service.send(db, caller, chat_id, body, data_keys=state.data_keys, bus=state.bus, push=state.push)


@router.get("/v1/chats/{chat_id}/messages")
async def history(
    chat_id: Id,
    caller: CurrentCaller,
    state: StateDep,
    db: DbSession,
    before: Seq | None = None,
    after: Seq | None = None,
    limit: Annotated[int, Query(ge=1, le=HISTORY_MAX_LIMIT)] = 50,
) -> MessagePage:
    return await service.history(
        db, caller, chat_id, before=before, after=after, limit=limit, data_keys=state.data_keys
    )


@router.patch("/v1/chats/{chat_id}/messages/{message_id}")
async def edit(
    chat_id: Id, message_id: Id, body: MessageEdit, caller: CurrentCaller, state: StateDep, db: DbSession
) -> MessageOut:
    return await service.edit(db, caller, chat_id, message_id, body, data_keys=state.data_keys, bus=state.bus)


@router.delete("/v1/chats/{chat_id}/messages/{message_id}", status_code=204)
async def delete(chat_id: Id, message_id: Id, caller: CurrentCaller, state: StateDep, db: DbSession) -> Response:
    await service.delete_message(db, caller, chat_id, message_id, bus=state.bus)
    return Response(status_code=204)


@router.put("/v1/chats/{chat_id}/messages/{message_id}/reactions/{emoji}", status_code=204)
async def add_reaction(
    chat_id: Id, message_id: Id, emoji: Emoji, caller: CurrentCaller, state: StateDep, db: DbSession
) -> Response:
    await service.react(db, caller, chat_id, message_id, emoji, remove=False, bus=state.bus)
    return Response(status_code=204)


@router.delete("/v1/chats/{chat_id}/messages/{message_id}/reactions/{emoji}", status_code=204)
async def remove_reaction(
    chat_id: Id, message_id: Id, emoji: Emoji, caller: CurrentCaller, state: StateDep, db: DbSession
) -> Response:
    await service.react(db, caller, chat_id, message_id, emoji, remove=True, bus=state.bus)
    return Response(status_code=204)


@router.get("/v1/chats/{chat_id}/pins")
async def list_pins(chat_id: Id, caller: CurrentCaller, state: StateDep, db: DbSession) -> MessagePage:
    return MessagePage(messages=await service.pinned(db, caller, chat_id, data_keys=state.data_keys), has_more=False)


@router.post("/v1/chats/{chat_id}/pins", status_code=204)
async def pin(chat_id: Id, body: PinRequest, caller: CurrentCaller, state: StateDep, db: DbSession) -> Response:
    await service.pin(db, caller, chat_id, body.message_id, bus=state.bus)
    return Response(status_code=204)


@router.delete("/v1/chats/{chat_id}/pins/{message_id}", status_code=204)
async def unpin(chat_id: Id, message_id: Id, caller: CurrentCaller, state: StateDep, db: DbSession) -> Response:
    await service.pin(db, caller, chat_id, message_id, unpin=True, bus=state.bus)
    return Response(status_code=204)


@router.post("/v1/chats/{chat_id}/read", status_code=204)
async def mark_read(chat_id: Id, body: ReadMark, caller: CurrentCaller, state: StateDep, db: DbSession) -> Response:
    await service.mark(db, caller, chat_id, body.seq, read=True, bus=state.bus)
    return Response(status_code=204)
