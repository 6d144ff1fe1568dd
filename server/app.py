"""create_app(settings): the FastAPI application and its lifespan (database, Redis, keys)."""

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from melo_protocol import __version__
from melo_protocol.wire.realtime import CloseCode
from server.accounts.router import router as accounts_router
from server.admin.router import router as admin_router
from server.auth import service as auth_service
from server.auth.router import router as auth_router
from server.calls.router import router as calls_router
from server.chats.router import router as chats_router
from server.config import Settings
from server.core.background import finish
from server.core.data_keys import DataKeyRing
from server.core.errors import install_error_handlers
from server.core.jwt_keys import JwtKeyRing
from server.core.live_sessions import LiveSessions
from server.core.logging import RequestContextMiddleware
from server.core.metrics import Metrics
from server.core.openapi_integers import keep_integer_bounds_exact
from server.core.passwords import Passwords
from server.core.ratelimit import RateLimiter
from server.core.revocation import MemoryRevocations, RedisRevocations, RevocationStore
from server.core.secrets import SecretBox, load_secret
from server.db.engine import create_engine, session_factory
from server.health import router as health_router
from server.jobs.router import router as jobs_router
from server.jobs.scheduler import JobScheduler
from server.keys.router import router as keys_router
from server.keys.service import forget_devices
from server.messages.router import router as messages_router
from server.openapi import install_openapi
from server.push.router import router as push_router
from server.push.service import PushService, ensure_vapid
from server.realtime import router as realtime_router
from server.realtime.bus import BusEvent, LocalBus, RedisBus
from server.realtime.hub import Hub
from server.realtime.presence import MemoryPresence, RedisPresence
from server.state import AppState

log = logging.getLogger("melo.app")


class BroadcastRevocations:
    """The revocation store, and a bus message so every worker closes that session's sockets now."""

    def __init__(
        self,
        store: RevocationStore,
        bus: LocalBus | RedisBus,
        *,
        sessions: async_sessionmaker[AsyncSession],
        live_sessions: LiveSessions,
    ) -> None:
        self._store = store
        self._bus = bus
        self._sessions = sessions
        self._live_sessions = live_sessions
        # off while the app loads the recent revocations at start: those sessions ended before
        self.forget_ended = False

    async def revoke(self, session_ids: Iterable[str]) -> None:
        ids = list(session_ids)
        await self._store.revoke(ids)
        if self.forget_ended:
            self._live_sessions.forget(ids)
        await self._bus.publish(BusEvent(kind="revoke", session_ids=ids))
        if self.forget_ended:
            # the device of an ended session leaves the key directory, and its contacts hear of it
            await forget_devices(ids, sessions=self._sessions, bus=self._bus)

    async def is_revoked(self, session_id: str) -> bool:
        return await self._store.is_revoked(session_id)


async def open_state(settings: Settings) -> AppState:
    """Open the database engine and Redis and load keys: everything a request needs."""
    engine = create_engine(settings.effective_database_url)
    sessions = session_factory(engine)
    redis = Redis.from_url(settings.redis_url) if settings.redis_url else None
    secret = settings.secret_key.get_secret_value() if settings.secret_key else None
    box = SecretBox(load_secret(settings.data_dir, secret))
    keys = JwtKeyRing(
        sessions,
        box,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        access_ttl_s=settings.access_token_ttl_seconds,
        propagation_s=settings.jwt_key_propagation_s,
    )
    revocation_ttl = settings.access_token_ttl_seconds + 60
    store: RevocationStore = (
        RedisRevocations(redis, settings.redis_prefix, revocation_ttl)
        if redis is not None
        else MemoryRevocations(revocation_ttl)
    )
    bus = RedisBus(redis, settings.redis_prefix) if redis is not None else LocalBus()
    live_sessions = LiveSessions()
    revocations = BroadcastRevocations(store, bus, sessions=sessions, live_sessions=live_sessions)
    state = AppState(
        settings=settings,
        engine=engine,
        sessions=sessions,
        redis=redis,
        box=box,
        keys=keys,
        passwords=Passwords(settings.argon2_time_cost, settings.argon2_memory_kib, settings.argon2_parallelism),
        limiter=RateLimiter(settings.redis_url, settings.redis_prefix),
        revocations=revocations,
        data_keys=DataKeyRing(sessions, box),
        bus=bus,
        hub=Hub(),
        presence=RedisPresence(redis, settings.redis_prefix) if redis is not None else MemoryPresence(),
        ws_limiter=RateLimiter(None, settings.redis_prefix),
        live_sessions=live_sessions,
    )
    await keys.ensure()
    await state.data_keys.ensure()
    await auth_service.load_recent_revocations(
        sessions=state.sessions, revocations=state.revocations, access_ttl_s=settings.access_token_ttl_seconds
    )
    revocations.forget_ended = True  # from now on a revocation forgets the session and its device
    return state


async def close_state(state: AppState) -> None:
    await state.limiter.aclose()
    await state.ws_limiter.aclose()
    if state.redis is not None:
        await state.redis.aclose()
    await state.engine.dispose()


def bus_handler(state: AppState, reloads: set["asyncio.Task[None]"]) -> Callable[[BusEvent], None]:
    """Bus events go to this worker's sockets, except "keys", which reloads the key rings (in a task kept
    in ``reloads`` until it ends, so shutdown can wait for it); "revoke" also drops the sessions from
    this worker's cache of live sessions."""

    async def reload_keys() -> None:
        try:
            await state.keys.reload()
            await state.data_keys.reload()
        except Exception:  # the rings also reload when stale; a failure here only delays that
            log.exception("could not reload the key rings after a rotation elsewhere")

    def handle(ev: BusEvent) -> None:
        if ev.kind == "keys":
            task = asyncio.create_task(reload_keys(), name="melo-keys-reload")
            reloads.add(task)
            task.add_done_callback(reloads.discard)
        else:
            if ev.kind == "revoke":
                state.live_sessions.forget(ev.session_ids)
            state.hub.dispatch(ev)

    return handle


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.migrate_on_start:
            from server.db.migrate import upgrade_async

            await upgrade_async(settings.effective_database_url)
        state = await open_state(settings)
        state.metrics = app.state.metrics
        app.state.melo = state
        reloads: set[asyncio.Task[None]] = set()
        state.bus.set_handler(bus_handler(state, reloads))
        await state.bus.start()
        maintenance_task = asyncio.create_task(realtime_router.maintenance(state), name="ws-maintenance")
        if await state.data_keys.count_on_old_keys():
            state.data_keys.start_reencryption()  # a rotation was interrupted: finish it
        push = PushService(
            settings=settings,
            sessions=state.sessions,
            presence=state.presence,
            vapid=await ensure_vapid(state.sessions, state.box),
        )
        state.push = push
        await push.start()
        state.jobs = jobs = JobScheduler(state)
        if settings.jobs_enabled:
            jobs.start()
        try:
            yield
        finally:
            await jobs.stop()
            await push.stop()
            await finish([maintenance_task], what="socket maintenance")
            await state.data_keys.stop_reencryption()
            await finish(list(reloads), what="key reload", grace=5.0)
            await state.hub.close_all(CloseCode.SERVER_SHUTDOWN, "server restarting: reconnect and resume")
            await state.bus.stop()
            await close_state(state)

    app = FastAPI(
        title="Melo",
        version=__version__,
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.metrics = Metrics()
    install_error_handlers(app)
    for router in (
        health_router,
        auth_router,
        accounts_router,
        admin_router,
        chats_router,
        messages_router,
        keys_router,
        realtime_router.router,
        push_router,
        jobs_router,
        calls_router,
    ):
        app.include_router(router)
    install_openapi(app)

    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.max_body_bytes,
        large_body_paths={"/v1/account/avatar": settings.max_avatar_bytes},
        metrics=app.state.metrics,
    )
    keep_integer_bounds_exact(app)
    return app
