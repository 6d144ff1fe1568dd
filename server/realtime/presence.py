"""Presence: a user is online while any of their devices holds a socket, on any worker.

Each socket is an entry with an expiry that its worker refreshes; a crashed worker's entries lapse.
Redis (a sorted set per user) when configured, a dict otherwise.
"""

import time

from redis.asyncio import Redis

ENTRY_TTL_S = 90


class MemoryPresence:
    def __init__(self) -> None:
        self._entries: dict[int, dict[str, float]] = {}

    async def connect(self, user_id: int, conn_id: str) -> bool:
        """Register a socket; True when the user just came online."""
        entries = self._entries.setdefault(user_id, {})
        now = time.time()
        was_online = any(exp > now for exp in entries.values())
        entries[conn_id] = now + ENTRY_TTL_S
        return not was_online

    async def disconnect(self, user_id: int, conn_id: str) -> bool:
        """Forget a socket; True when the user just went offline."""
        entries = self._entries.get(user_id, {})
        entries.pop(conn_id, None)
        now = time.time()
        online = any(exp > now for exp in entries.values())
        if not entries:
            self._entries.pop(user_id, None)
        return not online

    async def refresh(self, pairs: list[tuple[int, str]]) -> None:
        exp = time.time() + ENTRY_TTL_S
        for user_id, conn_id in pairs:
            self._entries.setdefault(user_id, {})[conn_id] = exp

    async def online(self, user_ids: list[int]) -> set[int]:
        now = time.time()
        return {u for u in user_ids if any(exp > now for exp in self._entries.get(u, {}).values())}


class RedisPresence:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix + "presence:"

    def _key(self, user_id: int) -> str:
        return f"{self._prefix}{user_id}"

    async def connect(self, user_id: int, conn_id: str) -> bool:
        key, now = self._key(user_id), time.time()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(key, "-inf", now)
            pipe.zcard(key)
            pipe.zadd(key, {conn_id: now + ENTRY_TTL_S})
            pipe.expire(key, ENTRY_TTL_S * 2)
            _, before, _, _ = await pipe.execute()
        return int(before) == 0

    async def disconnect(self, user_id: int, conn_id: str) -> bool:
        key, now = self._key(user_id), time.time()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(key, conn_id)
            pipe.zremrangebyscore(key, "-inf", now)
            pipe.zcard(key)
            _, _, after = await pipe.execute()
        return int(after) == 0

    async def refresh(self, pairs: list[tuple[int, str]]) -> None:
        if not pairs:
            return
        exp = time.time() + ENTRY_TTL_S
        async with self._redis.pipeline(transaction=False) as pipe:
            for user_id, conn_id in pairs:
                pipe.zadd(self._key(user_id), {conn_id: exp})
                pipe.expire(self._key(user_id), ENTRY_TTL_S * 2)
            await pipe.execute()

    async def online(self, user_ids: list[int]) -> set[int]:
        if not user_ids:
            return set()
        now = time.time()
        async with self._redis.pipeline(transaction=False) as pipe:
            for u in user_ids:
                pipe.zcount(self._key(u), now, "+inf")
            counts = await pipe.execute()
        return {u for u, n in zip(user_ids, counts, strict=True) if int(n) > 0}
