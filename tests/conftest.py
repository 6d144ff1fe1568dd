"""Shared fixtures: real databases and Redis per test run, the app in-process, a live server.

Service-backed tests read MELO_TEST_POSTGRES_URL, MELO_TEST_MYSQL_URL and MELO_TEST_REDIS_URL. Unset,
they skip; with MELO_TEST_REQUIRE_SERVICES=1 (set by .ci/run) a missing service fails the test.
Each run makes its own databases and Redis key prefix, so runs never collide.
"""

import asyncio
import base64
import itertools
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from server.app import create_app
from server.config import Settings
from server.db.migrate import upgrade
from tests.openapi_truth import assert_app_declared

# Never the developer's real keyring, not even in module- or session-scoped fixtures that run before the
# per-test isolation below (a test that needs a keyring installs an in-memory one itself).
os.environ["MELO_KEYRING"] = "file"
RUN_ID = secrets.token_hex(4)
# One server secret per run: every app in the run shares the run's databases and their sealed keys.
RUN_SECRET = base64.b64encode(secrets.token_bytes(32)).decode()
REQUIRE_SERVICES = os.environ.get("MELO_TEST_REQUIRE_SERVICES") == "1"
DB_BACKENDS = ["sqlite", "postgres", "mysql"]
STORE_BACKENDS = ["memory", "redis"]
_counter = itertools.count(1)

# The files that take minutes on their own (300 `melo send` processes, a clean-venv install, long
# resumes) are collected first, so that `make test`'s workers (pytest-xdist, a file each at a time, in
# collection order with --no-loadscope-reorder) start them at once instead of one worker ending the run
# alone with them.
LONG_FILES = ("tests/cli/test_send_rate.py", "tests/test_install.py", "tests/server/realtime/test_delivery.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return LONG_FILES.index(path) if path in LONG_FILES else len(LONG_FILES)

    items.sort(key=rank)  # stable: the order within files, and of all other files, is kept


def _service_url(env: str) -> str:
    url = os.environ.get(env)
    if not url:
        if REQUIRE_SERVICES:
            pytest.fail(f"{env} is not set but MELO_TEST_REQUIRE_SERVICES=1")
        pytest.skip(f"{env} not set")
    return url


async def _admin_sql(server_url: str, statement: str) -> None:
    """Run one statement on the database server itself (not inside a test database)."""
    url = make_url(server_url)
    if url.get_backend_name() == "postgresql":
        import asyncpg

        conn = await asyncpg.connect(
            host=url.host or "127.0.0.1", port=url.port or 5432, user=url.username or "postgres",
            password=url.password, database=url.database or "postgres",
        )
        try:
            await conn.execute(statement)
        finally:
            await conn.close()
        return
    import asyncmy

    conn = await asyncmy.connect(
        host=url.host or "127.0.0.1", port=url.port or 3306, user=url.username or "root",
        password=url.password or "",
    )
    try:
        async with conn.cursor() as cur:
            await cur.execute(statement)
    finally:
        conn.close()


async def _create_database(server_url: str, name: str) -> str:
    url = make_url(server_url)
    if url.get_backend_name() == "postgresql":
        await _admin_sql(server_url, f'CREATE DATABASE "{name}"')
        return url.set(drivername="postgresql+asyncpg", database=name).render_as_string(hide_password=False)
    await _admin_sql(server_url, f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    return url.set(drivername="mysql+asyncmy", database=name).render_as_string(hide_password=False)


async def _drop_database(server_url: str, name: str) -> None:
    if make_url(server_url).get_backend_name() == "postgresql":
        await _admin_sql(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    else:
        await _admin_sql(server_url, f"DROP DATABASE IF EXISTS `{name}`")


class _Databases:
    """One migrated database per backend per run, made on first use and dropped at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.urls: dict[str, str] = {}
        self.created: list[tuple[str, str]] = []

    def url(self, backend: str) -> str:
        if backend not in self.urls:
            url = self.empty(backend, "")
            upgrade(url)
            self.urls[backend] = url
        return self.urls[backend]

    def empty(self, backend: str, suffix: str) -> str:
        """A new database with no tables (dropped at the end of the run), e.g. to test a migration."""
        if backend == "sqlite":
            return f"sqlite+aiosqlite:///{self.tmp / f'melo-test{suffix}.sqlite3'}"
        env = "MELO_TEST_POSTGRES_URL" if backend == "postgres" else "MELO_TEST_MYSQL_URL"
        server_url = _service_url(env)
        name = f"melo_test_{RUN_ID}_{backend}{suffix}"
        url = asyncio.run(_create_database(server_url, name))
        self.created.append((server_url, name))
        return url

    def drop_all(self) -> None:
        for server_url, name in self.created:
            asyncio.run(_drop_database(server_url, name))


@pytest.fixture(scope="session")
def databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Databases]:
    dbs = _Databases(tmp_path_factory.mktemp("db"))
    yield dbs
    dbs.drop_all()


@pytest.fixture(scope="session")
def redis_url() -> str:
    return _service_url("MELO_TEST_REDIS_URL")


@pytest.fixture(scope="session", autouse=True)
def _clean_redis_prefix() -> Iterator[None]:
    yield
    url = os.environ.get("MELO_TEST_REDIS_URL")
    if not url:
        return

    async def clean() -> None:
        from redis.asyncio import Redis

        redis = Redis.from_url(url)
        try:
            keys = [k async for k in redis.scan_iter(match=f"melotest:{RUN_ID}:*", count=1000)]
            for i in range(0, len(keys), 500):
                await redis.delete(*keys[i : i + 500])
        finally:
            await redis.aclose()

    asyncio.run(clean())


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients never touch the developer's real config or keyring."""
    monkeypatch.setenv("MELO_HOME", str(tmp_path / "melo-home"))
    monkeypatch.setenv("MELO_KEYRING", "file")
    for name in ("MELO_SERVER", "MELO_PROFILE", "MELO_DATABASE_URL", "MELO_REDIS_URL", "MELO_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)


def make_settings(tmp_path: Path, database_url: str, redis_url: str | None = None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "redis_url": redis_url,
        "redis_prefix": f"melotest:{RUN_ID}:{next(_counter)}:",
        "data_dir": tmp_path / "server-data",
        "secret_key": RUN_SECRET,
        "migrate_on_start": False,
        "argon2_time_cost": 2,
        "argon2_memory_kib": 19456,
        "rate_login_ip": "1000/minute",
        "rate_login_account": "1000/minute",
        "rate_register_ip": "1000/minute",
        "rate_user": "100000/minute",
        # a rotated signing key is used this soon (tests wait for it by polling, never by sleeping)
        "jwt_key_propagation_s": 0.3,
        "log_json": True,
    }
    values.update(overrides)
    return Settings(**values)


class Api:
    """An httpx client on the in-process app, plus helpers that keep tests short."""

    def __init__(self, client: httpx.AsyncClient, app: Any, backend: str) -> None:
        self.client = client
        self.app = app
        self.backend = backend

    @property
    def state(self) -> Any:
        return self.app.state.melo

    def name(self, prefix: str = "u") -> str:
        return f"{prefix}{next(_counter)}_{secrets.token_hex(3)}"

    async def register(self, username: str | None = None, password: str = "correct horse battery",
                       **extra: Any) -> dict[str, Any]:
        username = username or self.name()
        r = await self.client.post("/v1/auth/register",
                                   json={"username": username, "password": password, **extra})
        assert r.status_code == 201, r.text
        return r.json()

    async def login(self, username: str, password: str = "correct horse battery",
                    **kwargs: Any) -> httpx.Response:
        return await self.client.post("/v1/auth/login", json={"username": username, "password": password},
                                      **kwargs)

    async def make_admin(self, username: str | None = None) -> dict[str, Any]:
        from sqlalchemy import update

        from server.db.models import User

        tokens = await self.register(username)
        async with self.state.sessions() as db:
            await db.execute(update(User).where(User.id == tokens["user"]["id"]).values(is_admin=True))
            await db.commit()
        return tokens


async def wait_signing_with(api: Api, kid: str, timeout: float = 30.0) -> None:
    """Poll until this app signs with ``kid`` (a rotated key is used from its activation time on)."""
    ring = api.state.keys
    async with asyncio.timeout(timeout):
        while True:
            await ring.refresh_if_stale()
            if ring.active_kid == kid:
                return
            await asyncio.sleep(0.05)  # polling for the activation time, with a deadline


def bearer(tokens: dict[str, Any] | str) -> dict[str, str]:
    token = tokens if isinstance(tokens, str) else tokens["access_token"]
    return {"Authorization": f"Bearer {token}"}


async def open_api(settings: Settings, backend: str) -> AsyncIterator[Api]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        # Registration mode is server-wide state in the shared test database: start every test open.
        from sqlalchemy import delete

        from server.db.models import ServerState

        async with app.state.melo.sessions() as db:
            await db.execute(delete(ServerState).where(ServerState.key == "registration.mode"))
            await db.commit()
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://melo.test") as client:
            yield Api(client, app, backend)
    assert_app_declared(app)  # every status the test met is in the OpenAPI document


@pytest.fixture(params=DB_BACKENDS)
def db_url(request: pytest.FixtureRequest, databases: _Databases) -> str:
    """A migrated database of each backend (SQLite, PostgreSQL, MariaDB). Sync: it may run asyncio.run."""
    return databases.url(request.param)


@pytest.fixture
def sqlite_url(databases: _Databases) -> str:
    return databases.url("sqlite")


@pytest.fixture
async def api(db_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    """The app on each database backend, in-process stores."""
    async for a in open_api(make_settings(tmp_path, db_url), make_url(db_url).get_backend_name()):
        yield a


@pytest.fixture
async def sqlite_api(sqlite_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async for a in open_api(make_settings(tmp_path, sqlite_url), "sqlite"):
        yield a


@pytest.fixture(params=STORE_BACKENDS)
def store_redis_url(request: pytest.FixtureRequest) -> str | None:
    return request.getfixturevalue("redis_url") if request.param == "redis" else None


@pytest.fixture
async def store_api(sqlite_url: str, store_redis_url: str | None, tmp_path: Path) -> AsyncIterator[Api]:
    """The app with rate limits and revocations in memory, then in real Redis."""
    settings = make_settings(tmp_path, sqlite_url, redis_url=store_redis_url)
    async for a in open_api(settings, "redis" if store_redis_url else "memory"):
        yield a
