"""Routes: the E2E key directory and the to-device queue."""

from typing import Annotated

from fastapi import APIRouter, Query

from melo_protocol.wire.bounds import Seq
from melo_protocol.wire.keys import (
    KeyCounts,
    KeysClaim,
    KeysClaimResult,
    KeysQuery,
    KeysQueryResult,
    KeysUpload,
    ToDeviceAck,
    ToDeviceList,
    ToDeviceSend,
)
from server.deps import CurrentCaller, DbSession, StateDep
from server.keys import service

router = APIRouter(tags=["keys"])


@router.post("/v1/keys/upload")
async def upload(body: KeysUpload, caller: CurrentCaller, state: StateDep, db: DbSession) -> KeyCounts:
    return await service.upload(db, caller, body, bus=state.bus)


@router.get("/v1/keys/count")
async def count(caller: CurrentCaller, db: DbSession) -> KeyCounts:
    return await service.counts(db, caller.claims.device_id)


@router.post("/v1/keys/query")
async def query(body: KeysQuery, caller: CurrentCaller, db: DbSession) -> KeysQueryResult:
    return KeysQueryResult(devices=await service.query(db, caller, body.users))


@router.post("/v1/keys/claim")
async def claim(body: KeysClaim, caller: CurrentCaller, state: StateDep, db: DbSession) -> KeysClaimResult:
    keys, fallback_used = await service.claim(db, caller, body.devices, bus=state.bus)
    return KeysClaimResult(one_time_keys=keys, fallback_used=fallback_used)


@router.post("/v1/to-device", status_code=202)
async def send_to_device(body: ToDeviceSend, caller: CurrentCaller, state: StateDep, db: DbSession) -> dict[str, int]:
    return {"queued": await service.send_to_device(db, caller, body.type, body.messages, bus=state.bus)}


@router.get("/v1/to-device")
async def list_to_device(
    caller: CurrentCaller,
    db: DbSession,
    after: Seq = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> ToDeviceList:
    return ToDeviceList(messages=await service.pending(db, caller.claims.device_id, after, limit))


@router.post("/v1/to-device/ack")
async def ack_to_device(body: ToDeviceAck, caller: CurrentCaller, db: DbSession) -> dict[str, int]:
    if body.ids is not None:
        removed = await service.acknowledge(db, caller.claims.device_id, max(body.ids), only=set(body.ids))
    else:
        assert body.up_to is not None  # the model requires one of the two
        removed = await service.acknowledge(db, caller.claims.device_id, body.up_to)
    return {"removed": removed}
