"""Web Push routes: the VAPID public key, and this user's per-device subscriptions."""

from fastapi import APIRouter, Response

from melo_protocol.wire.bounds import Id
from melo_protocol.wire.jobs import PushSubscriptionIn as SubscriptionIn
from melo_protocol.wire.jobs import PushSubscriptionList as SubscriptionList
from melo_protocol.wire.jobs import PushSubscriptionOut as SubscriptionOut
from melo_protocol.wire.jobs import VapidKeyOut
from server.deps import CurrentCaller, DbSession, StateDep
from server.push import service

router = APIRouter(prefix="/v1/push", tags=["push"])


@router.get("/vapid", response_model=VapidKeyOut)
async def vapid_key(state: StateDep) -> VapidKeyOut:
    return VapidKeyOut(public_key=state.push.vapid.application_server_key, kid=state.push.vapid.kid)


@router.post("/subscriptions", response_model=SubscriptionOut, status_code=201)
async def subscribe(
    body: SubscriptionIn, caller: CurrentCaller, state: StateDep, db: DbSession, response: Response
) -> SubscriptionOut:
    row, created = await service.subscribe(
        db,
        caller.user.id,
        caller.session_id,
        body.endpoint,
        body.p256dh,
        body.auth,
        body.include_sender,
        server_host=state.settings.host,
    )
    if not created:
        response.status_code = 200
    return SubscriptionOut(
        id=row.id,
        endpoint=row.endpoint,
        device_id=caller.claims.device_id,
        include_sender=row.include_sender,
        created_at=row.created_at,
        last_success_at=row.last_success_at,
        current_device=True,
    )


@router.get("/subscriptions", response_model=SubscriptionList)
async def list_subscriptions(caller: CurrentCaller, db: DbSession) -> SubscriptionList:
    rows = await service.list_subscriptions(db, caller.user.id)
    return SubscriptionList(
        subscriptions=[
            SubscriptionOut(
                id=s.id,
                endpoint=s.endpoint,
                device_id=device_id,
                include_sender=s.include_sender,
                created_at=s.created_at,
                last_success_at=s.last_success_at,
                current_device=s.session_id == caller.session_id,
            )
            for s, device_id in rows
        ]
    )


@router.delete("/subscriptions/{subscription_id}", status_code=204)
async def unsubscribe(subscription_id: Id, caller: CurrentCaller, db: DbSession) -> Response:
    await service.unsubscribe(db, caller.user.id, subscription_id)
    return Response(status_code=204)
