"""The app in the test's own process under a real uvicorn on a free loopback port, with users that hold a
REST client and open real WebSockets. A conftest that needs the ``live`` or ``live_backends`` fixture imports
it from here (tests/server/realtime, tests/protocol, tests/tui)."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy.engine import make_url

from server.app import create_app
from server.asgi import uvicorn_options
from server.config import Settings
from tests.conftest import make_settings
from tests.kit.wskit import Socket, open_socket
from tests.openapi_truth import assert_app_declared


class LiveServer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        # the options melo-server run gives uvicorn (WebSocket implementation, frame limit, logging)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=0, lifespan="on", ws_ping_interval=None,
                                **uvicorn_options(settings))
        self.server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None
        self.port = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self.server.serve())
        async with asyncio.timeout(30):
            while not self.server.started:
                if self._task.done():
                    self._task.result()
                await asyncio.sleep(0.01)  # uvicorn exposes no event for "started"
        self.port = self.server.servers[0].sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.server.should_exit = True
        if self._task is not None:
            # generous: a loaded 2-core CI box can take a while to close hundreds of sockets
            async with asyncio.timeout(45):
                await self._task
        assert_app_declared(self.app)  # every status the test met is in the OpenAPI document

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/ws"

    @property
    def state(self) -> Any:
        return self.app.state.melo


class Client:
    """A user with a REST client and helpers to open sockets."""

    def __init__(self, server: LiveServer, username: str, tokens: dict[str, Any]) -> None:
        self.server = server
        self.username = username
        self.tokens = tokens
        # 30 s, not httpx's 5: load tests (1,000 sends) share the machine's 2 cores with a second test worker,
        # and a send queued behind SQLite's single writer may take longer than 5 s there
        self.http = httpx.AsyncClient(base_url=server.url, timeout=30.0,
                                      headers={"Authorization": f"Bearer {tokens['access_token']}"})

    @property
    def user_id(self) -> int:
        return int(self.tokens["user"]["id"])

    async def call(self, method: str, path: str, expect: int | None = None, **kwargs: Any) -> Any:
        r = await self.http.request(method, path, **kwargs)
        if expect is not None:
            assert r.status_code == expect, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content and r.headers.get("content-type", "").startswith("application/json") else r

    async def socket(self, cursor: dict[str, int] | None = None, token: str | None = None) -> Socket:
        return await open_socket(self.server.ws_url, token or self.tokens["access_token"], cursor)

    async def close(self) -> None:
        await self.http.aclose()


class Live:
    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.clients: list[Client] = []
        self._n = 0

    async def user(self, prefix: str = "u") -> Client:
        self._n += 1
        name = f"{prefix}{self._n}{uuid.uuid4().hex[:6]}"
        async with httpx.AsyncClient(base_url=self.server.url) as http:
            r = await http.post("/v1/auth/register", json={"username": name, "password": "correct horse battery"})
            assert r.status_code == 201, r.text
        client = Client(self.server, name, r.json())
        self.clients.append(client)
        return client

    async def close(self) -> None:
        for c in self.clients:
            await c.close()


async def start_live(settings: Settings) -> LiveServer:
    server = LiveServer(settings)
    await server.start()
    return server


@pytest.fixture
async def live(sqlite_url: str, tmp_path: Path) -> AsyncIterator[Live]:
    """One live server on SQLite with the in-process bus."""
    server = await start_live(make_settings(tmp_path, sqlite_url))
    lv = Live(server)
    try:
        yield lv
    finally:
        await lv.close()
        await server.stop()


@pytest.fixture(params=["sqlite", "postgres+redis", "mysql+redis"])
async def live_backends(request: pytest.FixtureRequest, databases: Any, tmp_path: Path) -> AsyncIterator[Live]:
    """A live server on SQLite (in-process bus), PostgreSQL + Redis and MariaDB + Redis."""
    backend = request.param
    redis = None
    if backend == "sqlite":
        url = await asyncio.to_thread(databases.url, "sqlite")
    else:
        url = await asyncio.to_thread(databases.url, "postgres" if backend.startswith("postgres") else "mysql")
        redis = request.getfixturevalue("redis_url")
    server = await start_live(make_settings(tmp_path, url, redis_url=redis))
    lv = Live(server)
    lv.backend = make_url(url).get_backend_name()  # type: ignore[attr-defined]
    try:
        yield lv
    finally:
        await lv.close()
        await server.stop()
