"""Routes of the background duties: scheduled messages, disappearing-message timers, retention (admin)."""

from fastapi import APIRouter, Response

from melo_protocol.wire.bounds import Id
from melo_protocol.wire.jobs import (
    RetentionOut,
    RetentionRequest,
    RetentionRun,
    ScheduledList,
    ScheduledOut,
    ScheduleRequest,
    TimerOut,
    TimerRequest,
)
from server.admin import service as admin_service
from server.deps import AdminCaller, CurrentCaller, DbSession, StateDep
from server.jobs import service

router = APIRouter(tags=["jobs"])


@router.post("/v1/chats/{chat_id}/scheduled", response_model=ScheduledOut, status_code=201)
async def schedule(
    chat_id: Id, body: ScheduleRequest, caller: CurrentCaller, state: StateDep, db: DbSession
) -> ScheduledOut:
    return await service.schedule(db, caller, chat_id, body, box=state.box)


@router.get("/v1/scheduled", response_model=ScheduledList)
async def list_scheduled(caller: CurrentCaller, state: StateDep, db: DbSession) -> ScheduledList:
    return ScheduledList(scheduled=await service.pending(db, caller.user.id, box=state.box))


@router.delete("/v1/scheduled/{scheduled_id}", status_code=204)
async def cancel_scheduled(scheduled_id: Id, caller: CurrentCaller, db: DbSession) -> Response:
    await service.cancel(db, caller.user.id, scheduled_id)
    return Response(status_code=204)


@router.put("/v1/chats/{chat_id}/timer", response_model=TimerOut)
async def set_timer(chat_id: Id, body: TimerRequest, caller: CurrentCaller, state: StateDep, db: DbSession) -> TimerOut:
    return await service.set_timer(db, caller.user, chat_id, body.seconds, bus=state.bus)


@router.put("/v1/admin/chats/{chat_id}/retention", response_model=RetentionOut)
async def set_retention(chat_id: Id, body: RetentionRequest, caller: AdminCaller, state: StateDep) -> RetentionOut:
    async def run() -> RetentionOut:
        return await service.set_retention(
            state.sessions, chat_id, body.days, default_days=state.settings.retention_days
        )

    return await admin_service.audited(
        caller, "retention.set", f"chat:{chat_id}", run, {"days": body.days}, sessions=state.sessions
    )


@router.post("/v1/admin/retention/run", response_model=RetentionRun)
async def run_retention(caller: AdminCaller, state: StateDep) -> RetentionRun:
    jobs = state.jobs
    assert jobs is not None  # set by the app's lifespan, before any request

    async def run() -> RetentionRun:
        return RetentionRun(purged=await jobs.run_now("retention"))

    return await admin_service.audited(caller, "retention.run", None, run, sessions=state.sessions)
