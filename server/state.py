"""Everything a running app holds: settings, database, Redis, keys, stores. One per create_app()."""

from dataclasses import dataclass, field
from typing import Any, Protocol

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from server.config import Settings
from server.core.data_keys import DataKeyRing
from server.core.jwt_keys import JwtKeyRing
from server.core.live_sessions import LiveSessions
from server.core.metrics import Metrics
from server.core.passwords import Passwords
from server.core.ratelimit import RateLimiter
from server.core.revocation import RevocationStore
from server.core.secrets import SecretBox
from server.push.service import PushService
from server.realtime.bus import BusEvent, LocalBus, RedisBus
from server.realtime.hub import Hub
from server.realtime.presence import MemoryPresence, RedisPresence


class JobRunner(Protocol):
    """What the app asks of its job scheduler (server.jobs.scheduler.JobScheduler, which builds on this
    state, so it is named here by what it does)."""

    async def run_now(self, name: str) -> Any:
        """Run one job at once, outside its schedule; its result."""


@dataclass
class AppState:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    redis: Redis | None
    box: SecretBox
    keys: JwtKeyRing
    passwords: Passwords
    limiter: RateLimiter
    revocations: RevocationStore
    data_keys: DataKeyRing
    bus: LocalBus | RedisBus
    hub: Hub
    presence: MemoryPresence | RedisPresence
    ws_limiter: RateLimiter
    live_sessions: LiveSessions = field(default_factory=LiveSessions)
    last_seen_written: dict[str, float] = field(default_factory=dict)
    metrics: Metrics | None = None
    push: PushService | None = None  # set by the app's lifespan
    jobs: JobRunner | None = None  # set by the app's lifespan

    async def announce_key_rotation(self) -> None:
        """Tell every worker to reload its JWT and data key rings now (they also do so when stale)."""
        await self.bus.publish(BusEvent(kind="keys"))
