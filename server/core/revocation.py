"""Revoked sessions, checked on every authenticated request: Redis when configured, else in-process.

An entry lives as long as an access token could (its TTL plus a margin); after that the token has
expired on its own and the refresh path reads the database.
"""

import time
from collections.abc import Iterable
from typing import Protocol

from redis.asyncio import Redis


class RevocationStore(Protocol):
    async def revoke(self, session_ids: Iterable[str]) -> None: ...

    async def is_revoked(self, session_id: str) -> bool: ...


class MemoryRevocations:
    def __init__(self, ttl_s: int) -> None:
        self._ttl_s = ttl_s
        self._until: dict[str, float] = {}

    async def revoke(self, session_ids: Iterable[str]) -> None:
        until = time.monotonic() + self._ttl_s
        for sid in session_ids:
            self._until[sid] = until
        if len(self._until) > 10_000:
            now = time.monotonic()
            self._until = {k: v for k, v in self._until.items() if v > now}

    async def is_revoked(self, session_id: str) -> bool:
        until = self._until.get(session_id)
        return until is not None and until > time.monotonic()


class RedisRevocations:
    def __init__(self, redis: Redis, prefix: str, ttl_s: int) -> None:
        self._redis = redis
        self._prefix = prefix + "revoked:"
        self._ttl_s = ttl_s

    async def revoke(self, session_ids: Iterable[str]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for sid in session_ids:
                pipe.set(self._prefix + sid, b"1", ex=self._ttl_s)
            await pipe.execute()

    async def is_revoked(self, session_id: str) -> bool:
        return bool(await self._redis.exists(self._prefix + session_id))
