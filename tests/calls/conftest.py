"""Call tests run against a live server on PostgreSQL + Redis: the deployment calls are meant for (a
scaled-out server relays call signals between workers over Redis). SQLite once reused to-device ids
and lost later signals; that is fixed (AUTOINCREMENT), and the SQLite paths are covered elsewhere."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_settings
from tests.kit.livekit import Live, start_live


@asynccontextmanager
async def postgres_live(databases: Any, redis_url: str, tmp_path: Path) -> AsyncIterator[Live]:
    url = await asyncio.to_thread(databases.url, "postgres")
    server = await start_live(make_settings(tmp_path, url, redis_url=redis_url))
    lv = Live(server)
    try:
        yield lv
    finally:
        await lv.close()
        await server.stop()


@pytest.fixture
async def live(databases: Any, redis_url: str, tmp_path: Path) -> AsyncIterator[Live]:
    async with postgres_live(databases, redis_url, tmp_path) as lv:
        yield lv
