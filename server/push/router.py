"""Web Push routes: the VAPID public key, and this user's per-device subscriptions."""

from datetime import datetime

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from server.deps import CurrentCaller, DbSession, StateDep
from server.push import service

router = APIRouter(prefix="/v1/push", tags=["push"])


class VapidKeyOut(BaseModel):
    public_key: str  # base64url uncompressed P-256 point: the applicationServerKey
    kid: str
    algorithm: str = service.VAPID_ALGORITHM


class SubscriptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoint: str = Field(min_length=8, max_length=1000)
    p256dh: str = Field(min_length=80, max_length=128)
    auth: str = Field(min_length=16, max_length=64)
    include_sender: bool = False


class SubscriptionOut(BaseModel):
    id: int
    endpoint: str
    device_id: str
    include_sender: bool
    created_at: datetime
    last_success_at: datetime | None = None
    current_device: bool = False


class SubscriptionList(BaseModel):
    subscriptions: list[SubscriptionOut]


@router.get("/vapid", response_model=VapidKeyOut)
async def vapid_key(state: StateDep) -> VapidKeyOut:
    return VapidKeyOut(public_key=state.push.vapid.application_server_key, kid=state.push.vapid.kid)


@router.post("/subscriptions", response_model=SubscriptionOut, status_code=201)
async def subscribe(body: SubscriptionIn, caller: CurrentCaller, state: StateDep, db: DbSession,
                    response: Response) -> SubscriptionOut:
    row, created = await service.subscribe(state, db, caller.user.id, caller.session_id, body.endpoint, body.p256dh,
                                           body.auth, body.include_sender)
    if not created:
        response.status_code = 200
    return SubscriptionOut(id=row.id, endpoint=row.endpoint, device_id=caller.claims.device_id,
                           include_sender=row.include_sender, created_at=row.created_at,
                           last_success_at=row.last_success_at, current_device=True)


@router.get("/subscriptions", response_model=SubscriptionList)
async def list_subscriptions(caller: CurrentCaller, db: DbSession) -> SubscriptionList:
    rows = await service.list_subscriptions(db, caller.user.id)
    return SubscriptionList(subscriptions=[
        SubscriptionOut(id=s.id, endpoint=s.endpoint, device_id=device_id, include_sender=s.include_sender,
                        created_at=s.created_at, last_success_at=s.last_success_at,
                        current_device=s.session_id == caller.session_id)
        for s, device_id in rows
    ])


@router.delete("/subscriptions/{subscription_id}", status_code=204)
async def unsubscribe(subscription_id: int, caller: CurrentCaller, db: DbSession) -> Response:
    await service.unsubscribe(db, caller.user.id, subscription_id)
    return Response(status_code=204)
