"""Liveness, readiness (database and Redis reachable) and Prometheus metrics."""

import asyncio

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from server.deps import StateDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(state: StateDep, response: Response) -> dict[str, str]:
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(3):
            async with state.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = "unreachable: " + type(exc).__name__
    if state.redis is not None:
        try:
            async with asyncio.timeout(3):
                await state.redis.ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = "unreachable: " + type(exc).__name__
    ok = all(v == "ok" for v in checks.values())
    response.status_code = 200 if ok else 503
    return {"status": "ok" if ok else "unavailable", **checks}


@router.get("/metrics", response_class=Response)
async def metrics(state: StateDep) -> Response:
    assert state.metrics is not None  # set by the app's lifespan, before any request
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
