"""Routes: the caller's account, profiles, avatars, user look-up."""

from fastapi import APIRouter, Request, Response

from melo_protocol.wire import AccountOut, ErrorCode, PasswordChangeRequest, ProfileUpdate, UserPublic
from server.accounts import service
from server.auth.service import user_public
from server.core.errors import ApiError
from server.deps import CurrentCaller, DbSession, StateDep

router = APIRouter(tags=["accounts"])


@router.get("/v1/account")
async def me(caller: CurrentCaller) -> AccountOut:
    return AccountOut(
        **user_public(caller.user).model_dump(),
        is_admin=caller.user.is_admin,
        session_id=caller.claims.session_id,
        device_id=caller.claims.device_id,
    )


@router.patch("/v1/account/profile")
async def update_profile(body: ProfileUpdate, caller: CurrentCaller, db: DbSession) -> UserPublic:
    return user_public(await service.update_profile(db, caller.user, body))


@router.post("/v1/account/password")
async def change_password(
    body: PasswordChangeRequest, caller: CurrentCaller, state: StateDep, db: DbSession
) -> dict[str, int]:
    n = await service.change_password(
        db,
        caller.user,
        body,
        current_session=caller.session_id,
        passwords=state.passwords,
        revocations=state.revocations,
    )
    return {"sessions_revoked": n}


@router.put(
    "/v1/account/avatar",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                t: {"schema": {"type": "string", "format": "binary"}} for t in ("image/png", "image/jpeg", "image/webp")
            },
        }
    },
)
async def set_avatar(request: Request, caller: CurrentCaller, db: DbSession) -> UserPublic:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("image/png", "image/jpeg", "image/webp", "application/octet-stream"):
        raise ApiError(ErrorCode.UNSUPPORTED_MEDIA_TYPE, "send the image as image/png, image/jpeg or image/webp")
    data = await request.body()
    return user_public(await service.set_avatar(db, caller.user, data))


@router.delete("/v1/account/avatar")
async def delete_avatar(caller: CurrentCaller, db: DbSession) -> UserPublic:
    return user_public(await service.delete_avatar(db, caller.user))


@router.get("/v1/users/{username}")
async def get_user(username: str, caller: CurrentCaller, db: DbSession) -> UserPublic:
    return user_public(await service.get_user(db, username))


@router.get(
    "/v1/users/{username}/avatar",
    response_class=Response,
    responses={200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}}}, 304: {}},
)
async def get_avatar(username: str, request: Request, caller: CurrentCaller, db: DbSession) -> Response:
    row = await service.get_avatar(db, username)
    etag = f'"{row.etag}"'
    headers = {"ETag": etag, "Cache-Control": "private, max-age=300"}
    if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers=headers)
    return Response(content=row.data, media_type=row.content_type, headers=headers)
