"""Rate limits (in memory and in Redis), password hashing strength, and settings refused as unsafe."""

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import select

from server.config import Settings
from server.db.models import User
from tests.conftest import Api, bearer, make_settings, open_api

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"
OTHER_ADDRESS = ("10.9.8.7", 1234)

AppMaker = Callable[..., AbstractAsyncContextManager[Api]]


@pytest.fixture
def limited(sqlite_url: str, store_redis_url: str | None, tmp_path: Path) -> AppMaker:
    """An app with the given (small) limits; limits and revocations in memory, then in Redis."""

    @asynccontextmanager
    async def make(**overrides: Any) -> AsyncIterator[Api]:
        settings = make_settings(tmp_path, sqlite_url, redis_url=store_redis_url, **overrides)
        gen = open_api(settings, "redis" if store_redis_url else "memory")
        try:
            yield await gen.__anext__()
        finally:
            await gen.aclose()

    return make


@asynccontextmanager
async def client_from(api: Api, address: tuple[str, int]) -> AsyncIterator[httpx.AsyncClient]:
    """A second client of the same in-process app, from another address."""
    transport = httpx.ASGITransport(app=api.app, client=address)
    async with httpx.AsyncClient(transport=transport, base_url="http://melo.test") as client:
        yield client


def assert_limited(r: httpx.Response, limit: str) -> None:
    assert r.status_code == 429, r.text
    body = r.json()["error"]
    assert set(body) == {"code", "message", "details"}
    assert body["code"] == "rate_limited"
    retry_after = int(r.headers["Retry-After"])
    period = {"second": 1, "minute": 60, "hour": 3600}[limit.split("/")[1]]
    assert 1 <= retry_after <= period
    assert body["details"]["retry_after"] == retry_after
    assert body["details"]["limit"] == limit


def login_body(username: str, password: str = PASSWORD) -> dict[str, str]:
    return {"username": username, "password": password}


# -- login ------------------------------------------------------------------------------------------------
async def test_login_limit_per_ip(limited: AppMaker) -> None:
    async with limited(rate_login_ip="5/minute") as api:
        user = await api.register()
        name = user["user"]["username"]
        # every attempt from the address counts, good or bad
        for i in range(5):
            r = await api.login(name, PASSWORD if i % 2 else "wrong password here")
            assert r.status_code == (200 if i % 2 else 401), r.text
        assert_limited(await api.login(name), "5/minute")
        assert_limited(await api.login(api.name()), "5/minute")
        # another address is counted apart, for the very same account
        async with client_from(api, OTHER_ADDRESS) as other:
            r = await other.post("/v1/auth/login", json=login_body(name))
            assert r.status_code == 200, r.text
        # the limit is on logging in, not on the sessions already open
        assert (await api.client.get("/v1/account", headers=bearer(user))).status_code == 200


async def test_login_limit_per_account_counts_failures(limited: AppMaker) -> None:
    async with limited(rate_login_account="3/minute") as api:
        owner = await api.register()
        name = owner["user"]["username"]
        # successful logins do not count against the account
        for _ in range(4):
            assert (await api.login(name)).status_code == 200
        # someone guesses from several addresses
        async with client_from(api, OTHER_ADDRESS) as other:
            for client in (api.client, other, other):
                r = await client.post("/v1/auth/login", json=login_body(name, "guess guess guess"))
                assert r.status_code == 401, r.text
            for client in (api.client, other):
                assert_limited(await client.post("/v1/auth/login", json=login_body(name)), "3/minute")
                assert_limited(await client.post("/v1/auth/login", json=login_body(name.upper())), "3/minute")
        # the known device keeps working: its access token, and refreshing its refresh token
        assert (await api.client.get("/v1/account", headers=bearer(owner))).status_code == 200
        r = await api.client.post("/v1/auth/refresh", json={"refresh_token": owner["refresh_token"]})
        assert r.status_code == 200, r.text
        assert (await api.client.get("/v1/account", headers=bearer(r.json()))).status_code == 200
        # other accounts log in from the same address
        bystander = await api.register()
        assert (await api.login(bystander["user"]["username"])).status_code == 200


# -- registration, authenticated routes -------------------------------------------------------------------
async def test_register_limit_per_ip(limited: AppMaker) -> None:
    async with limited(rate_register_ip="3/minute") as api:
        for _ in range(3):
            await api.register()
        r = await api.client.post("/v1/auth/register", json={"username": api.name(), "password": PASSWORD})
        assert_limited(r, "3/minute")
        async with client_from(api, OTHER_ADDRESS) as other:
            r = await other.post("/v1/auth/register", json={"username": api.name(), "password": PASSWORD})
            assert r.status_code == 201, r.text


async def test_per_user_limit_on_authenticated_routes(limited: AppMaker) -> None:
    async with limited(rate_user="5/minute") as api:
        alice = await api.register()
        bob = await api.register()
        for path in ("/v1/account", "/v1/sessions", "/v1/account", "/v1/sessions", "/v1/account"):
            assert (await api.client.get(path, headers=bearer(alice))).status_code == 200
        assert_limited(await api.client.get("/v1/account", headers=bearer(alice)), "5/minute")
        assert_limited(await api.client.get("/v1/sessions", headers=bearer(alice)), "5/minute")
        # counted per user, not per session or address: a second session of alice is limited too
        alice2 = (await api.login(alice["user"]["username"])).json()
        async with client_from(api, OTHER_ADDRESS) as other:
            assert_limited(await other.get("/v1/account", headers=bearer(alice2)), "5/minute")
        assert (await api.client.get("/v1/account", headers=bearer(bob))).status_code == 200


# -- passwords --------------------------------------------------------------------------------------------
ARGON2 = re.compile(r"^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$")


async def test_stored_password_hash_is_argon2id_with_server_defaults(sqlite_url: str, tmp_path: Path) -> None:
    defaults = {name: Settings.model_fields[name].default
                for name in ("argon2_time_cost", "argon2_memory_kib", "argon2_parallelism")}
    assert defaults["argon2_memory_kib"] >= 19 * 1024 and defaults["argon2_time_cost"] >= 2
    gen = open_api(make_settings(tmp_path, sqlite_url, **defaults), "sqlite")
    api = await gen.__anext__()
    try:
        tokens = await api.register()
        async with api.state.sessions() as db:
            stored = await db.scalar(select(User.password_hash).where(User.id == tokens["user"]["id"]))
        match = ARGON2.match(stored or "")
        assert match, stored
        m, t, p = (int(x) for x in match.groups())
        assert (m, t, p) == (defaults["argon2_memory_kib"], defaults["argon2_time_cost"],
                             defaults["argon2_parallelism"])
        assert m >= 19456 and t >= 2
        assert PASSWORD not in stored
        assert (await api.login(tokens["user"]["username"])).status_code == 200
    finally:
        await gen.aclose()


def test_settings_refuse_weak_argon2() -> None:
    with pytest.raises(ValidationError, match="argon2_memory_kib"):
        Settings(argon2_memory_kib=19455)
    with pytest.raises(ValidationError, match="argon2_time_cost"):
        Settings(argon2_time_cost=1)
    ok = Settings(argon2_memory_kib=19456, argon2_time_cost=2)
    assert (ok.argon2_memory_kib, ok.argon2_time_cost) == (19456, 2)


# -- settings refused as unsafe --------------------------------------------------------------------------
def test_public_bind_with_open_registration_and_default_url_refused() -> None:
    with pytest.raises(ValidationError) as info:
        Settings(host="0.0.0.0")
    message = str(info.value)
    assert "0.0.0.0" in message
    assert "open registration" in message and "MELO_REGISTRATION_MODE" in message
    assert "MELO_PUBLIC_URL" in message
    # chosen on purpose, it is allowed
    Settings(host="0.0.0.0", registration_mode="token", public_url="https://chat.example.org")
    Settings(host="0.0.0.0", allow_open_registration_public=True, public_url="https://chat.example.org")
    with pytest.raises(ValidationError, match="MELO_PUBLIC_URL"):
        Settings(host="0.0.0.0", registration_mode="closed")
    # loopback needs none of it
    Settings(host="::1")


def _server_cli(args: list[str], tmp_path: Path, **env_extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MELO_")}
    env.update({"MELO_DATA_DIR": str(tmp_path / "cli-data"), **env_extra})
    return subprocess.run(
        [sys.executable, "-c", "from server.cli import main; main()", *args],
        env=env, capture_output=True, text=True, timeout=60, cwd=ROOT,
    )


async def test_cli_run_refuses_workers_without_redis(tmp_path: Path) -> None:
    proc = await asyncio.to_thread(_server_cli, ["run", "--workers", "2", "--port", "0"], tmp_path)
    assert proc.returncode != 0
    assert "MELO_REDIS_URL" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "cli-data" / "melo.sqlite3").exists()  # refused before touching anything


async def test_cli_run_refuses_public_bind_defaults(tmp_path: Path) -> None:
    proc = await asyncio.to_thread(_server_cli, ["run", "--host", "0.0.0.0", "--port", "0"], tmp_path)
    assert proc.returncode != 0
    assert "open registration" in proc.stderr and "MELO_PUBLIC_URL" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
