"""Routes: ICE servers for calls and missed-call records."""

from fastapi import APIRouter

from melo_protocol.wire.bounds import Id
from melo_protocol.wire.calls import IceServers, MissedCall, MissedCallOut
from server.calls import service
from server.deps import CurrentCaller, DbSession, StateDep

router = APIRouter(tags=["calls"])


@router.get("/v1/calls/ice-servers")
async def ice_servers(caller: CurrentCaller, state: StateDep) -> IceServers:
    return service.ice_servers(state.settings, caller)


@router.post("/v1/chats/{chat_id}/calls/missed", status_code=201)
async def missed_call(
    chat_id: Id, body: MissedCall, caller: CurrentCaller, state: StateDep, db: DbSession
) -> MissedCallOut:
    return await service.record_missed(db, caller, chat_id, body, bus=state.bus)
