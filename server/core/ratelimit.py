"""Rate limits with the `limits` library: Redis storage when configured, memory otherwise."""

import math
import time

from limits import parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from melo_protocol.wire import ErrorCode
from server.core.errors import ApiError


class RateLimiter:
    def __init__(self, redis_url: str | None, prefix: str) -> None:
        storage: Storage
        if redis_url:
            uri = "async+" + redis_url if not redis_url.startswith("async+") else redis_url
            storage = RedisStorage(uri, implementation="redispy", key_prefix=prefix + "limits")
        else:
            storage = MemoryStorage()
        self.storage = storage
        self._limiter = MovingWindowRateLimiter(storage)

    async def hit(self, limit: str, *key: str) -> None:
        """Count one hit; raise 429 with Retry-After when over the limit."""
        item = parse(limit)
        if not await self._limiter.hit(item, *key):
            await self._raise(limit, *key)

    async def check(self, limit: str, *key: str) -> None:
        """Refuse if already over the limit, without counting."""
        item = parse(limit)
        if not await self._limiter.test(item, *key):
            await self._raise(limit, *key)

    async def _raise(self, limit: str, *key: str) -> None:
        stats = await self._limiter.get_window_stats(parse(limit), *key)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise ApiError(
            ErrorCode.RATE_LIMITED,
            f"too many requests; retry in {retry_after} s",
            {"retry_after": retry_after, "limit": limit},
            headers={"Retry-After": str(retry_after)},
        )

    async def reset(self) -> None:
        await self.storage.reset()

    async def aclose(self) -> None:
        """Close the Redis connections the storage opened (none for memory); call on shutdown."""
        client = getattr(getattr(self.storage, "bridge", None), "storage", None)
        if client is not None and hasattr(client, "aclose"):
            await client.aclose()
