"""Admin API (admin role): users, bans, sessions, registration, keys, stats and the audit log."""

from typing import Annotated

from fastapi import APIRouter, Query

from melo_protocol.wire import (
    AdminKeyList,
    AdminPasswordReset,
    AdminPasswordResetOut,
    AdminUserDetail,
    AdminUserList,
    AdminUserSummary,
    AuditList,
    BanRequest,
    KeyRotateRequest,
    KeyRotateResult,
    RegistrationModeBody,
    RegistrationTokenCreate,
    RegistrationTokenList,
    RegistrationTokenOut,
    StatsOut,
)
from melo_protocol.wire.bounds import Offset
from server.accounts import service as accounts_service
from server.admin import service
from server.auth import service as auth_service
from server.deps import AdminCaller, DbSession, StateDep

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.get("/users")
async def list_users(
    caller: AdminCaller,
    state: StateDep,
    db: DbSession,
    search: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Offset = 0,
) -> AdminUserList:
    async def run() -> AdminUserList:
        return AdminUserList(users=await service.list_users(db, search, limit, offset))

    return await service.audited(caller, "users.list", search, run, sessions=state.sessions)


@router.get("/users/{username}")
async def show_user(username: str, caller: AdminCaller, state: StateDep, db: DbSession) -> AdminUserDetail:
    async def run() -> AdminUserDetail:
        return await service.user_detail(db, await service.find_user(db, username))

    return await service.audited(caller, "users.show", username, run, sessions=state.sessions)


@router.post("/users/{username}/ban")
async def ban_user(
    username: str, body: BanRequest, caller: AdminCaller, state: StateDep, db: DbSession
) -> AdminUserSummary:
    async def run() -> AdminUserSummary:
        user = await service.find_user(db, username)
        await service.ban(db, caller, user, body.reason, revocations=state.revocations)
        return service.summary(user)

    return await service.audited(caller, "users.ban", username, run, {"reason": body.reason}, sessions=state.sessions)


@router.post("/users/{username}/unban")
async def unban_user(username: str, caller: AdminCaller, state: StateDep, db: DbSession) -> AdminUserSummary:
    async def run() -> AdminUserSummary:
        user = await service.find_user(db, username)
        await service.unban(db, user)
        return service.summary(user)

    return await service.audited(caller, "users.unban", username, run, sessions=state.sessions)


@router.post("/users/{username}/deactivate")
async def deactivate_user(username: str, caller: AdminCaller, state: StateDep, db: DbSession) -> AdminUserSummary:
    async def run() -> AdminUserSummary:
        user = await service.find_user(db, username)
        await service.deactivate(db, caller, user, revocations=state.revocations)
        return service.summary(user)

    return await service.audited(caller, "users.deactivate", username, run, sessions=state.sessions)


@router.post("/users/{username}/reset-password")
async def reset_password(
    username: str, body: AdminPasswordReset, caller: AdminCaller, state: StateDep, db: DbSession
) -> AdminPasswordResetOut:
    async def run() -> AdminPasswordResetOut:
        user = await service.find_user(db, username)
        generated, revoked = await service.reset_password(
            db, user, body.new_password, passwords=state.passwords, revocations=state.revocations
        )
        return AdminPasswordResetOut(username=user.username, temporary_password=generated, sessions_revoked=revoked)

    return await service.audited(caller, "users.reset_password", username, run, sessions=state.sessions)


@router.post("/users/{username}/promote")
async def promote(username: str, caller: AdminCaller, state: StateDep, db: DbSession) -> AdminUserSummary:
    async def run() -> AdminUserSummary:
        user = await service.find_user(db, username)
        await service.set_admin(db, caller, user, True)
        return service.summary(user)

    return await service.audited(caller, "users.promote", username, run, sessions=state.sessions)


@router.post("/users/{username}/demote")
async def demote(username: str, caller: AdminCaller, state: StateDep, db: DbSession) -> AdminUserSummary:
    async def run() -> AdminUserSummary:
        user = await service.find_user(db, username)
        await service.set_admin(db, caller, user, False)
        return service.summary(user)

    return await service.audited(caller, "users.demote", username, run, sessions=state.sessions)


@router.post("/users/{username}/sessions/revoke-all")
async def revoke_user_sessions(username: str, caller: AdminCaller, state: StateDep, db: DbSession) -> dict[str, int]:
    async def run() -> dict[str, int]:
        user = await service.find_user(db, username)
        return {
            "revoked": await auth_service.revoke_user_sessions(
                db, user.id, reason="admin", revocations=state.revocations
            )
        }

    return await service.audited(caller, "sessions.revoke_all", username, run, sessions=state.sessions)


@router.get("/registration")
async def get_registration(caller: AdminCaller, state: StateDep, db: DbSession) -> RegistrationModeBody:
    async def run() -> RegistrationModeBody:
        return RegistrationModeBody(
            mode=await accounts_service.registration_mode(db, default=state.settings.registration_mode)
        )

    return await service.audited(caller, "registration.show", None, run, sessions=state.sessions)


@router.put("/registration")
async def set_registration(
    body: RegistrationModeBody, caller: AdminCaller, state: StateDep, db: DbSession
) -> RegistrationModeBody:
    async def run() -> RegistrationModeBody:
        await accounts_service.set_registration_mode(db, body.mode)
        return body

    return await service.audited(caller, "registration.set", body.mode.value, run, sessions=state.sessions)


@router.post("/registration-tokens", status_code=201)
async def create_token(
    body: RegistrationTokenCreate, caller: AdminCaller, state: StateDep, db: DbSession
) -> RegistrationTokenOut:
    async def run() -> RegistrationTokenOut:
        return await service.create_token(db, caller, body)

    return await service.audited(caller, "tokens.create", None, run, body.model_dump(), sessions=state.sessions)


@router.get("/registration-tokens")
async def list_tokens(caller: AdminCaller, state: StateDep, db: DbSession) -> RegistrationTokenList:
    async def run() -> RegistrationTokenList:
        return RegistrationTokenList(tokens=await service.list_tokens(db))

    return await service.audited(caller, "tokens.list", None, run, sessions=state.sessions)


@router.delete("/registration-tokens/{token}")
async def revoke_token(token: str, caller: AdminCaller, state: StateDep, db: DbSession) -> RegistrationTokenOut:
    async def run() -> RegistrationTokenOut:
        return await service.revoke_token(db, token)

    return await service.audited(caller, "tokens.revoke", token[:8] + "…", run, sessions=state.sessions)


@router.get("/stats")
async def stats(caller: AdminCaller, state: StateDep, db: DbSession) -> StatsOut:
    async def run() -> StatsOut:
        return await service.stats(db)

    return await service.audited(caller, "stats.show", None, run, sessions=state.sessions)


@router.get("/audit")
async def audit(
    caller: AdminCaller,
    state: StateDep,
    db: DbSession,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    action: Annotated[str | None, Query(max_length=64)] = None,
) -> AuditList:
    # Reading the log is itself recorded, after the read, so the answer shows what came before it.
    async def run() -> AuditList:
        return AuditList(entries=await service.audit_entries(db, limit, action))

    return await service.audited(caller, "audit.show", None, run, sessions=state.sessions)


@router.get("/keys")
async def list_keys(caller: AdminCaller, state: StateDep) -> AdminKeyList:
    async def run() -> AdminKeyList:
        vapid_kid = state.push.vapid.kid if state.push is not None else None
        return AdminKeyList(keys=service.key_list(await state.keys.list_keys(), state.data_keys.active_kid, vapid_kid))

    return await service.audited(caller, "keys.list", None, run, sessions=state.sessions)


@router.post("/keys/rotate")
async def rotate_keys(body: KeyRotateRequest, caller: AdminCaller, state: StateDep) -> KeyRotateResult:
    async def run() -> KeyRotateResult:
        rotated = []
        pending = 0
        if body.jwt:
            row = await state.keys.rotate()
            rotated.append(service.key_out(row, state.keys.active_kid))
        if body.data:
            row = await state.data_keys.rotate()
            rotated.append(service.key_out(row, state.data_keys.active_kid))
            pending = await state.data_keys.count_on_old_keys()
        await state.announce_key_rotation()  # other workers publish the new JWT key, seal with the new data key
        if body.data:
            state.data_keys.start_reencryption()
        return KeyRotateResult(rotated=rotated, reencrypt_pending=pending)

    kinds = ",".join(k for k, on in (("jwt", body.jwt), ("data", body.data)) if on)
    return await service.audited(caller, "keys.rotate", kinds or None, run, sessions=state.sessions)
