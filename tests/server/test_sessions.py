"""Device sessions: listing, revoking one/others/all, logout, password change, revocation everywhere."""

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.routing import APIRoute
from sqlalchemy.engine import make_url

from server.config import Settings
from server.deps import get_caller
from tests.conftest import Api, bearer, make_settings, open_api

ME = "/v1/account"
PASSWORD = "correct horse battery"


def error_code(r: Any) -> str:
    body = r.json()
    assert set(body["error"]) == {"code", "message", "details"}, body
    return str(body["error"]["code"])


async def status_of(api: Api, tokens: dict[str, Any]) -> tuple[int, str | None]:
    r = await api.client.get(ME, headers=bearer(tokens))
    return r.status_code, (error_code(r) if r.status_code != 200 else None)


async def login(api: Api, username: str, device: str | None = None, ua: str | None = None,
                password: str = PASSWORD) -> dict[str, Any]:
    body: dict[str, Any] = {"username": username, "password": password}
    if device is not None:
        body["device_name"] = device
    headers = {"User-Agent": ua} if ua else {}
    r = await api.client.post("/v1/auth/login", json=body, headers=headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def sessions(api: Api, tokens: dict[str, Any]) -> list[dict[str, Any]]:
    r = await api.client.get("/v1/sessions", headers=bearer(tokens))
    assert r.status_code == 200, r.text
    return list(r.json()["sessions"])


@asynccontextmanager
async def app_for(settings: Settings, backend: str) -> AsyncIterator[Api]:
    gen = open_api(settings, backend)
    try:
        yield await gen.__anext__()
    finally:
        await gen.aclose()


# -- listing ---------------------------------------------------------------------------------------------
async def test_login_creates_described_session(api: Api) -> None:
    first = await api.register()
    name = first["user"]["username"]
    before = datetime.now(UTC) - timedelta(seconds=5)
    laptop = await login(api, name, "Alice's laptop", "melo-cli/0.1 (Linux)")
    phone = await login(api, name, "phone\x07\n", "melo-tui/0.1")
    after = datetime.now(UTC) + timedelta(seconds=5)

    listed = {s["id"]: s for s in await sessions(api, laptop)}
    assert set(listed) == {first["session_id"], laptop["session_id"], phone["session_id"]}
    mine = listed[laptop["session_id"]]
    assert mine["current"] is True
    assert [s["id"] for s in listed.values() if s["current"]] == [laptop["session_id"]]
    assert mine["device_name"] == "Alice's laptop"
    assert mine["device_id"] == laptop["device_id"]
    assert mine["user_agent"] == "melo-cli/0.1 (Linux)"
    assert mine["ip"] == "127.0.0.1"
    for field in ("created_at", "last_seen_at"):
        ts = datetime.fromisoformat(mine[field])
        assert ts.tzinfo is not None and before <= ts <= after, (field, ts)
    # control characters never reach the stored label
    assert listed[phone["session_id"]]["device_name"] == "phone"
    assert listed[phone["session_id"]]["user_agent"] == "melo-tui/0.1"
    # each login is its own device
    assert len({s["device_id"] for s in listed.values()}) == 3
    # seen from the phone, the phone is current
    assert [s["id"] for s in await sessions(api, phone) if s["current"]] == [phone["session_id"]]


# -- revoking --------------------------------------------------------------------------------------------
async def test_delete_one_session(api: Api) -> None:
    a = await api.register()
    b = await login(api, a["user"]["username"], "b")
    c = await login(api, a["user"]["username"], "c")
    r = await api.client.delete(f"/v1/sessions/{b['session_id']}", headers=bearer(a))
    assert r.status_code == 204, r.text
    assert await status_of(api, b) == (401, "session_revoked")
    r = await api.client.post("/v1/auth/refresh", json={"refresh_token": b["refresh_token"]})
    assert (r.status_code, error_code(r)) == (401, "session_revoked")
    assert await status_of(api, a) == (200, None)
    assert await status_of(api, c) == (200, None)
    assert {s["id"] for s in await sessions(api, a)} == {a["session_id"], c["session_id"]}
    # already revoked: gone
    r = await api.client.delete(f"/v1/sessions/{b['session_id']}", headers=bearer(a))
    assert (r.status_code, error_code(r)) == (404, "session_not_found")


async def test_delete_foreign_or_unknown_session_is_not_found(api: Api) -> None:
    alice = await api.register()
    mallory = await api.register()
    for sid in (alice["session_id"], "0" * 32, "x" * 300):
        r = await api.client.delete(f"/v1/sessions/{sid}", headers=bearer(mallory))
        assert (r.status_code, error_code(r)) == (404, "session_not_found"), sid
    assert await status_of(api, alice) == (200, None)
    assert await status_of(api, mallory) == (200, None)


async def test_revoke_others_keeps_the_caller(api: Api) -> None:
    a = await api.register()
    others = [await login(api, a["user"]["username"], f"d{i}") for i in range(2)]
    bystander = await api.register()
    r = await api.client.post("/v1/sessions/revoke-others", headers=bearer(a))
    assert r.status_code == 200, r.text
    assert r.json() == {"revoked": 2}
    assert await status_of(api, a) == (200, None)
    for t in others:
        assert await status_of(api, t) == (401, "session_revoked")
    assert [s["id"] for s in await sessions(api, a)] == [a["session_id"]]
    assert await status_of(api, bystander) == (200, None)


async def test_revoke_all_includes_the_caller(api: Api) -> None:
    a = await api.register()
    b = await login(api, a["user"]["username"])
    bystander = await api.register()
    r = await api.client.post("/v1/sessions/revoke-all", headers=bearer(a))
    assert r.status_code == 200, r.text
    assert r.json() == {"revoked": 2}
    for t in (a, b):
        assert await status_of(api, t) == (401, "session_revoked")
        r = await api.client.post("/v1/auth/refresh", json={"refresh_token": t["refresh_token"]})
        assert (r.status_code, error_code(r)) == (401, "session_revoked")
    assert await status_of(api, bystander) == (200, None)
    # the account itself still works: a new login is a new session
    fresh = await login(api, a["user"]["username"])
    assert await status_of(api, fresh) == (200, None)


async def test_logout_revokes_the_current_session(api: Api) -> None:
    a = await api.register()
    b = await login(api, a["user"]["username"])
    r = await api.client.post("/v1/auth/logout", headers=bearer(a))
    assert r.status_code == 204, r.text
    assert await status_of(api, a) == (401, "session_revoked")
    r = await api.client.post("/v1/auth/refresh", json={"refresh_token": a["refresh_token"]})
    assert (r.status_code, error_code(r)) == (401, "session_revoked")
    assert await status_of(api, b) == (200, None)


async def test_password_change_revokes_other_sessions(api: Api) -> None:
    a = await api.register()
    name = a["user"]["username"]
    b = await login(api, name)
    wrong = await api.client.post(
        "/v1/account/password", headers=bearer(a),
        json={"current_password": "not it at all", "new_password": "a new long secret"},
    )
    assert wrong.status_code == 403 and error_code(wrong) == "invalid_credentials"
    assert await status_of(api, b) == (200, None)

    r = await api.client.post("/v1/account/password", headers=bearer(a),
                              json={"current_password": PASSWORD, "new_password": "a new long secret"})
    assert r.status_code == 200, r.text
    assert r.json() == {"sessions_revoked": 1}
    assert await status_of(api, a) == (200, None)
    assert await status_of(api, b) == (401, "session_revoked")
    r = await api.client.post("/v1/auth/refresh", json={"refresh_token": a["refresh_token"]})
    assert r.status_code == 200, r.text
    assert (await api.login(name)).status_code == 401
    assert (await api.login(name, "a new long secret")).status_code == 200


# -- revocation reaches every route at once, with the store in memory and in Redis -----------------------
def _needs_caller(route: APIRoute) -> bool:
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        if dep.call is get_caller:
            return True
        stack.extend(dep.dependencies)
    return False


def _api_routes(routes: list[Any]) -> list[APIRoute]:
    """Every APIRoute, also inside included routers (newer FastAPI keeps them nested)."""
    out: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            out.append(route)
        elif hasattr(route, "original_router"):
            out.extend(_api_routes(route.original_router.routes))
    return out


def authenticated_routes(api: Api) -> list[tuple[str, str]]:
    out = []
    for route in _api_routes(api.app.routes):
        if _needs_caller(route):
            path = re.sub(r"\{[^}]+\}", "someone", route.path)
            out.extend((method, path) for method in sorted(route.methods))
    return out


async def test_revocation_is_refused_on_every_authenticated_route(store_api: Api) -> None:
    api = store_api
    admin = await api.make_admin()
    doomed = await login(api, admin["user"]["username"])
    routes = authenticated_routes(api)
    assert ("GET", ME) in routes and ("GET", "/v1/sessions") in routes
    assert any(path.startswith("/v1/admin/") for _, path in routes)
    # before: the session is accepted everywhere (whatever else the route then says)
    for method, path in routes:
        if method == "GET":
            r = await api.client.request(method, path, headers=bearer(doomed))
            assert r.status_code != 401, (method, path, r.text)

    r = await api.client.delete(f"/v1/sessions/{doomed['session_id']}", headers=bearer(admin))
    assert r.status_code == 204
    for method, path in routes:
        r = await api.client.request(method, path, headers=bearer(doomed), json={})
        assert r.status_code == 401, (method, path, r.text)
        assert error_code(r) == "session_revoked", (method, path, r.text)
    assert await status_of(api, admin) == (200, None)


async def test_revocation_seen_by_a_second_instance_through_redis(
    sqlite_url: str, redis_url: str, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, sqlite_url, redis_url=redis_url)
    async with app_for(settings, "redis") as one, app_for(settings, "redis") as two:
        a = await one.register()
        b = await login(one, a["user"]["username"])
        assert await status_of(two, b) == (200, None)
        r = await one.client.post("/v1/sessions/revoke-others", headers=bearer(a))
        assert r.json() == {"revoked": 1}
        assert await status_of(two, b) == (401, "session_revoked")
        r = await two.client.post("/v1/auth/logout", headers=bearer(a))
        assert r.status_code == 204
        assert await status_of(one, a) == (401, "session_revoked")


async def test_revocation_survives_restart_with_memory_store(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, db_url)
    backend = make_url(db_url).get_backend_name()
    async with app_for(settings, backend) as api:
        a = await api.register()
        b = await login(api, a["user"]["username"])
        r = await api.client.delete(f"/v1/sessions/{b['session_id']}", headers=bearer(a))
        assert r.status_code == 204
        assert await status_of(api, b) == (401, "session_revoked")
    async with app_for(settings, backend) as api:
        assert not await api.state.revocations.is_revoked(a["session_id"])
        assert await status_of(api, b) == (401, "session_revoked")
        assert await status_of(api, a) == (200, None)

