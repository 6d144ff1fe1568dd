"""Routes: register, login, refresh, logout, sessions, JWKS."""

from typing import Any

from fastapi import APIRouter, Request, Response

from melo_protocol.wire import (
    ErrorCode,
    LoginRequest,
    RefreshRequest,
    RegisterRequest,
    SessionList,
    TokenResponse,
)
from server.accounts import service as accounts_service
from server.auth import service
from server.core.errors import ApiError
from server.db.models import DeviceSession
from server.deps import CurrentCaller, DbSession, StateDep, client_ip

router = APIRouter(tags=["auth"])


@router.post("/v1/auth/register", status_code=201)
async def register(body: RegisterRequest, request: Request, state: StateDep, db: DbSession) -> TokenResponse:
    return await accounts_service.register(
        db,
        body,
        ip=client_ip(request, state),
        user_agent=request.headers.get("user-agent"),
        settings=state.settings,
        limiter=state.limiter,
        passwords=state.passwords,
        keys=state.keys,
    )


@router.post("/v1/auth/login")
async def login(body: LoginRequest, request: Request, state: StateDep, db: DbSession) -> TokenResponse:
    return await service.login(
        db,
        body,
        ip=client_ip(request, state),
        user_agent=request.headers.get("user-agent"),
        settings=state.settings,
        limiter=state.limiter,
        passwords=state.passwords,
        keys=state.keys,
    )


@router.post("/v1/auth/refresh")
async def refresh(body: RefreshRequest, request: Request, state: StateDep, db: DbSession) -> TokenResponse:
    return await service.refresh(
        db,
        body.refresh_token,
        ip=client_ip(request, state),
        user_agent=request.headers.get("user-agent"),
        keys=state.keys,
        revocations=state.revocations,
    )


@router.post("/v1/auth/logout", status_code=204)
async def logout(caller: CurrentCaller, state: StateDep, db: DbSession) -> Response:
    await service.revoke_sessions(db, [caller.session_id], reason="logout", revocations=state.revocations)
    return Response(status_code=204)


@router.get("/v1/sessions")
async def list_sessions(caller: CurrentCaller, db: DbSession) -> SessionList:
    rows = await service.active_sessions(db, caller.user.id)
    return SessionList(sessions=[service.session_out(r, caller.session_id) for r in rows])


@router.delete("/v1/sessions/{session_id}", status_code=204)
async def revoke_session(session_id: str, caller: CurrentCaller, state: StateDep, db: DbSession) -> Response:
    row = await db.get(DeviceSession, session_id[:64])
    if row is None or row.user_id != caller.user.id or row.revoked_at is not None:
        raise ApiError(ErrorCode.SESSION_NOT_FOUND, "no such session", {"session_id": session_id[:64]})
    await service.revoke_sessions(db, [row.id], reason="revoked_by_user", revocations=state.revocations)
    return Response(status_code=204)


@router.post("/v1/sessions/revoke-others")
async def revoke_others(caller: CurrentCaller, state: StateDep, db: DbSession) -> dict[str, int]:
    n = await service.revoke_user_sessions(
        db, caller.user.id, reason="revoked_by_user", keep=caller.session_id, revocations=state.revocations
    )
    return {"revoked": n}


@router.post("/v1/sessions/revoke-all")
async def revoke_all(caller: CurrentCaller, state: StateDep, db: DbSession) -> dict[str, int]:
    n = await service.revoke_user_sessions(db, caller.user.id, reason="revoked_by_user", revocations=state.revocations)
    return {"revoked": n}


@router.get("/.well-known/jwks.json")
async def jwks(state: StateDep) -> dict[str, Any]:
    return await state.keys.jwks()
