"""Admin API on every database: access control and audit of every route, then each action's behaviour;
and ``melo-server create-admin`` bootstrapping the first admin from a subprocess."""

import asyncio
import os
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.routing import APIRoute, iter_route_contexts

from tests.conftest import RUN_SECRET, Api, bearer
from tests.server.test_accounts import PASSWORD, assert_error

# Bodies for admin routes whose body has required fields; every other body route gets "{}".
REQUIRED_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("PUT", "/v1/admin/registration"): {"mode": "open"},
    ("PUT", "/v1/admin/chats/{chat_id}/retention"): {"days": 30},
}


def admin_routes(api: Api) -> list[tuple[str, str, APIRoute]]:
    """Every (method, path, route) the app serves under /v1/admin, included routers flattened."""
    out = []
    for ctx in iter_route_contexts(api.app.routes):
        path = ctx.path or ""
        if not path.startswith("/v1/admin"):
            continue
        route = ctx.original_route
        assert isinstance(route, APIRoute), f"{path}: not an APIRoute; extend this test for it"
        for method in sorted(route.methods):
            out.append((method, path, route))
    return out


async def _audit(api: Api, admin: dict[str, Any], limit: int = 20, **params: Any) -> list[dict[str, Any]]:
    r = await api.client.get("/v1/admin/audit", params={"limit": limit, **params}, headers=bearer(admin))
    assert r.status_code == 200, r.text
    return r.json()["entries"]  # type: ignore[no-any-return]


async def _fill(api: Api, admin: dict[str, Any], path: str) -> tuple[str, str | None]:
    """A concrete URL for a route template, with a fresh target; and the target's name."""
    target = None
    for param in re.findall(r"{(\w+)}", path):
        if param == "username":
            target = api.name("victim")
            await api.register(target)
            path = path.replace("{username}", target)
        elif param == "token":
            r = await api.client.post("/v1/admin/registration-tokens", json={}, headers=bearer(admin))
            assert r.status_code == 201
            path = path.replace("{token}", r.json()["token"])
        elif param == "chat_id":
            r = await api.client.post("/v1/chats", json={"kind": "channel", "title": "retained"},
                                      headers=bearer(admin))
            assert r.status_code == 201
            target = f"chat:{r.json()['id']}"
            path = path.replace("{chat_id}", str(r.json()["id"]))
        else:
            raise AssertionError(f"admin route {path}: teach this test how to fill {{{param}}}")
    return path, target


async def test_every_admin_route_is_guarded_and_audited(api: Api) -> None:
    routes = admin_routes(api)
    # the known surface is all there (and the enumeration is not vacuous)
    paths = {(m, p) for m, p, _ in routes}
    assert len(routes) >= 18
    spec = api.app.openapi()["paths"]
    assert {(m.upper(), p) for p, ops in spec.items() if p.startswith("/v1/admin") for m in ops} <= paths
    for expected in [("GET", "/v1/admin/users"), ("POST", "/v1/admin/users/{username}/ban"),
                     ("GET", "/v1/admin/audit"), ("GET", "/v1/admin/stats"),
                     ("PUT", "/v1/admin/registration"), ("DELETE", "/v1/admin/registration-tokens/{token}")]:
        assert expected in paths

    admin = await api.make_admin()
    admin_name = admin["user"]["username"]
    user = await api.register()
    for method, template, route in routes:
        path, target = await _fill(api, admin, template)
        body = REQUIRED_BODIES.get((method, template), {}) if route.body_field is not None else None
        kwargs: dict[str, Any] = {"json": body} if body is not None else {}

        r = await api.client.request(method, path, **kwargs)
        assert_error(r, 401, "unauthenticated")
        r = await api.client.request(method, path, headers={"Authorization": "Bearer not.a.jwt"}, **kwargs)
        assert_error(r, 401)
        r = await api.client.request(method, path, headers=bearer(user), **kwargs)
        assert_error(r, 403, "admin_required")

        before = datetime.now(UTC) - timedelta(seconds=5)
        r = await api.client.request(method, path, headers=bearer(admin), **kwargs)
        assert r.status_code in (200, 201), (method, path, r.text)
        newest = (await _audit(api, admin, limit=1))[0]
        assert newest["actor"] == admin_name, (method, template, newest)
        assert newest["outcome"] == "ok", newest
        assert newest["action"] and re.fullmatch(r"[a-z_]+\.[a-z_]+", newest["action"])
        created = datetime.fromisoformat(newest["created_at"])
        assert created.tzinfo is not None
        assert before <= created <= datetime.now(UTC) + timedelta(seconds=5)
        if target is not None:
            assert newest["target"] == target


async def test_list_search_and_show_users(api: Api) -> None:
    admin = await api.make_admin()
    h = bearer(admin)
    tag = api.name("srch").replace("_", "")
    alice = await api.register(f"{tag}_alice")
    await api.register(f"{tag}_bob")
    r = await api.client.patch("/v1/account/profile", json={"display_name": f"Zed {tag.upper()} Q"},
                               headers=bearer(alice))
    assert r.status_code == 200
    lonely = await api.register()

    r = await api.client.get("/v1/admin/users", params={"search": tag}, headers=h)
    assert r.status_code == 200
    assert sorted(u["username"] for u in r.json()["users"]) == [f"{tag}_alice", f"{tag}_bob"]
    r = await api.client.get("/v1/admin/users", params={"search": f"zed {tag}"}, headers=h)
    assert [u["username"] for u in r.json()["users"]] == [f"{tag}_alice"]
    # LIKE wildcards in the search are literal
    r = await api.client.get("/v1/admin/users", params={"search": f"{tag}%"}, headers=h)
    assert r.json()["users"] == []
    r = await api.client.get("/v1/admin/users", params={"search": "_" * 20}, headers=h)
    assert r.json()["users"] == []
    r = await api.client.get("/v1/admin/users", params={"limit": 2}, headers=h)
    assert len(r.json()["users"]) == 2
    r = await api.client.get("/v1/admin/users", params={"limit": 100000}, headers=h)
    assert_error(r, 422, "validation_error")

    await api.login(f"{tag}_alice")  # a second session
    r = await api.client.get(f"/v1/admin/users/{tag.upper()}_ALICE", headers=h)
    assert r.status_code == 200, r.text
    detail = r.json()
    assert detail["username"] == f"{tag}_alice" and detail["id"] == alice["user"]["id"]
    assert detail["is_admin"] is False and detail["banned"] is False and detail["deactivated"] is False
    assert detail["last_seen_at"] is not None
    assert len(detail["sessions"]) == 2
    assert alice["session_id"] in {s["id"] for s in detail["sessions"]}
    assert all(s["last_seen_at"] for s in detail["sessions"])
    assert "password_hash" not in r.text
    r = await api.client.get(f"/v1/admin/users/{lonely['user']['username']}", headers=h)
    assert len(r.json()["sessions"]) == 1
    assert_error(await api.client.get(f"/v1/admin/users/{api.name('nobody')}", headers=h), 404, "user_not_found")


async def test_ban_and_unban(api: Api) -> None:
    admin = await api.make_admin()
    h = bearer(admin)
    name = api.name("ban")
    first = await api.register(name)
    second = (await api.login(name)).json()

    r = await api.client.post(f"/v1/admin/users/{name}/ban", json={"reason": "spam"}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["banned"] is True
    for tokens in (first, second):
        assert_error(await api.client.get("/v1/account", headers=bearer(tokens)), 401)
        r = await api.client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert_error(r, 401)
    assert_error(await api.login(name), 403, "account_banned")
    assert_error(await api.login(name, "wrong password!!"), 401, "invalid_credentials")
    detail = (await api.client.get(f"/v1/admin/users/{name}", headers=h)).json()
    assert detail["banned"] is True and detail["ban_reason"] == "spam" and detail["sessions"] == []
    entry = (await _audit(api, admin, action="users.ban"))[0]
    assert entry["target"] == name and entry["outcome"] == "ok" and entry["details"] == {"reason": "spam"}

    r = await api.client.post(f"/v1/admin/users/{name}/unban", headers=h)
    assert r.status_code == 200 and r.json()["banned"] is False
    r = await api.login(name)
    assert r.status_code == 200
    assert (await api.client.get("/v1/account", headers=bearer(r.json()))).status_code == 200
    # sessions revoked by the ban stay revoked
    assert_error(await api.client.get("/v1/account", headers=bearer(first)), 401)


async def test_deactivate(api: Api) -> None:
    admin = await api.make_admin()
    h = bearer(admin)
    name = api.name("deact")
    tokens = await api.register(name)
    viewer = bearer(await api.register())
    r = await api.client.post(f"/v1/admin/users/{name}/deactivate", headers=h)
    assert r.status_code == 200 and r.json()["deactivated"] is True
    assert_error(await api.client.get("/v1/account", headers=bearer(tokens)), 401)
    assert_error(await api.login(name), 403, "account_deactivated")
    assert_error(await api.client.get(f"/v1/users/{name}", headers=viewer), 404, "user_not_found")
    # the name stays taken
    r = await api.client.post("/v1/auth/register", json={"username": name, "password": PASSWORD})
    assert_error(r, 409, "username_taken")


async def test_reset_password(api: Api) -> None:
    admin = await api.make_admin()
    h = bearer(admin)
    name = api.name("reset")
    tokens = await api.register(name)
    r = await api.client.post(f"/v1/admin/users/{name}/reset-password", json={}, headers=h)
    assert r.status_code == 200, r.text
    out = r.json()
    temporary = out["temporary_password"]
    assert isinstance(temporary, str) and len(temporary) >= 16
    assert out["sessions_revoked"] == 1 and out["username"] == name
    assert_error(await api.client.get("/v1/account", headers=bearer(tokens)), 401)
    assert_error(await api.login(name), 401, "invalid_credentials")
    assert (await api.login(name, temporary)).status_code == 200
    # returned once: not in the audit log, the user detail, or a second reset
    audit = await api.client.get("/v1/admin/audit", params={"limit": 50}, headers=h)
    assert temporary not in audit.text
    assert temporary not in (await api.client.get(f"/v1/admin/users/{name}", headers=h)).text
    again = (await api.client.post(f"/v1/admin/users/{name}/reset-password", json={}, headers=h)).json()
    assert again["temporary_password"] != temporary

    # an admin-chosen password is checked like any other and not echoed
    r = await api.client.post(f"/v1/admin/users/{name}/reset-password", json={"new_password": "short"}, headers=h)
    assert_error(r, 400, "weak_password")
    r = await api.client.post(f"/v1/admin/users/{name}/reset-password",
                              json={"new_password": "chosen by the admin"}, headers=h)
    assert r.status_code == 200 and r.json()["temporary_password"] is None
    assert "chosen by the admin" not in r.text
    assert (await api.login(name, "chosen by the admin")).status_code == 200
    assert_error(await api.login(name, temporary), 401, "invalid_credentials")


async def test_promote_and_demote(api: Api) -> None:
    admin = await api.make_admin()
    h = bearer(admin)
    name = api.name("promo")
    tokens = await api.register(name)
    assert_error(await api.client.get("/v1/admin/stats", headers=bearer(tokens)), 403, "admin_required")
    r = await api.client.post(f"/v1/admin/users/{name}/promote", headers=h)
    assert r.status_code == 200 and r.json()["is_admin"] is True
    # the same access token now reaches admin routes: the role is read per request
    assert (await api.client.get("/v1/admin/stats", headers=bearer(tokens))).status_code == 200
    assert (await api.client.get("/v1/account", headers=bearer(tokens))).json()["is_admin"] is True
    r = await api.client.post(f"/v1/admin/users/{name}/demote", headers=h)
    assert r.status_code == 200 and r.json()["is_admin"] is False
    assert_error(await api.client.get("/v1/admin/stats", headers=bearer(tokens)), 403, "admin_required")


async def test_admin_cannot_target_self(api: Api) -> None:
    admin = await api.make_admin()
    h = bearer(admin)
    me = admin["user"]["username"]
    for action in ("ban", "deactivate", "demote"):
        kwargs: dict[str, Any] = {"json": {}} if action == "ban" else {}
        r = await api.client.post(f"/v1/admin/users/{me.upper()}/{action}", headers=h, **kwargs)
        assert_error(r, 400, "cannot_target_self")
        entry = (await _audit(api, admin, limit=1))[0]
        assert entry["action"] == f"users.{action}" and entry["outcome"] == "cannot_target_self"
        assert entry["actor"] == me
    # still an admin, still signed in
    assert (await api.client.get("/v1/admin/stats", headers=h)).status_code == 200
    detail = (await api.client.get(f"/v1/admin/users/{me}", headers=h)).json()
    assert detail["is_admin"] is True and not detail["banned"] and not detail["deactivated"]


async def test_revoke_all_sessions_of_a_user(api: Api) -> None:
    admin = await api.make_admin()
    name = api.name("rvk")
    sessions = [await api.register(name)] + [(await api.login(name)).json() for _ in range(2)]
    r = await api.client.post(f"/v1/admin/users/{name}/sessions/revoke-all", headers=bearer(admin))
    assert r.status_code == 200 and r.json() == {"revoked": 3}
    for tokens in sessions:
        assert_error(await api.client.get("/v1/account", headers=bearer(tokens)), 401)
    # not banned: the user signs in again
    assert (await api.login(name)).status_code == 200
    # the admin's own session is untouched
    assert (await api.client.get("/v1/account", headers=bearer(admin))).status_code == 200


async def test_stats(api: Api) -> None:
    admin = await api.make_admin()
    h = bearer(admin)
    before = (await api.client.get("/v1/admin/stats", headers=h)).json()
    assert set(before) >= {"users", "active_users", "admins", "banned_users", "sessions", "messages"}
    assert before["users"] >= 1 and before["admins"] >= 1 and before["sessions"] >= 1 and before["messages"] >= 0
    name = api.name("st")
    await api.register(name)
    await api.login(name)
    mid = (await api.client.get("/v1/admin/stats", headers=h)).json()
    assert mid["users"] == before["users"] + 1
    assert mid["active_users"] == before["active_users"] + 1
    assert mid["sessions"] == before["sessions"] + 2
    await api.client.post(f"/v1/admin/users/{name}/ban", json={}, headers=h)
    after = (await api.client.get("/v1/admin/stats", headers=h)).json()
    assert after["users"] == mid["users"] and after["banned_users"] == mid["banned_users"] + 1
    assert after["active_users"] == mid["active_users"] - 1 and after["sessions"] == mid["sessions"] - 2


async def test_audit_records_failures(api: Api) -> None:
    admin = await api.make_admin()
    h = bearer(admin)
    ghost = api.name("ghost")
    for action, path in (("users.ban", f"/v1/admin/users/{ghost}/ban"),
                         ("users.unban", f"/v1/admin/users/{ghost}/unban"),
                         ("users.reset_password", f"/v1/admin/users/{ghost}/reset-password"),
                         ("users.promote", f"/v1/admin/users/{ghost}/promote"),
                         ("sessions.revoke_all", f"/v1/admin/users/{ghost}/sessions/revoke-all")):
        r = await api.client.post(path, json={}, headers=h)
        assert_error(r, 404, "user_not_found")
        entry = (await _audit(api, admin, limit=1))[0]
        assert entry == {**entry, "action": action, "target": ghost, "outcome": "user_not_found",
                         "actor": admin["user"]["username"]}
    r = await api.client.delete("/v1/admin/registration-tokens/nonexistent", headers=h)
    assert_error(r, 404, "registration_token_not_found")
    entry = (await _audit(api, admin, limit=1))[0]
    assert entry["action"] == "tokens.revoke" and entry["outcome"] == "registration_token_not_found"
    # the audit is filterable by action and newest first
    bans = await _audit(api, admin, action="users.ban")
    assert bans and all(e["action"] == "users.ban" for e in bans)
    ids = [e["id"] for e in await _audit(api, admin, limit=10)]
    assert ids == sorted(ids, reverse=True)


# --- melo-server create-admin -------------------------------------------------------------------


async def test_create_admin_cli_bootstraps_an_admin(api: Api, db_url: str, tmp_path: Path) -> None:
    name = api.name("Boss")
    password = "bootstrap-" + os.urandom(8).hex()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MELO_")},
        "MELO_DATABASE_URL": db_url,
        "MELO_DATA_DIR": str(tmp_path / "cli-data"),
        "MELO_SECRET_KEY": RUN_SECRET,
    }
    argv = [sys.executable, "-c", "from server.cli import main; main()", "create-admin", name, "--password-stdin"]
    assert not any(password in a for a in argv)

    async def run(secret: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate((secret + "\n").encode()), timeout=120)
        return proc.returncode or 0, out.decode(errors="replace")

    code, out = await run("tiny-pw")
    assert code == 1, out
    assert "at least 10 characters" in out and "tiny-pw" not in out
    assert_error(await api.login(name, "tiny-pw"), 401)

    code, out = await run(password)
    assert code == 0, out
    assert password not in out
    assert name.lower() in out

    r = await api.login(name, password)
    assert r.status_code == 200, r.text
    tokens = r.json()
    assert tokens["user"]["username"] == name.lower()
    stats = await api.client.get("/v1/admin/stats", headers=bearer(tokens))
    assert stats.status_code == 200, stats.text
    assert stats.json()["admins"] >= 1
    me = await api.client.get("/v1/account", headers=bearer(tokens))
    assert me.json()["is_admin"] is True


async def test_create_admin_cli_unreachable_database(tmp_path: Path) -> None:
    password = "unreachable-" + os.urandom(8).hex()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MELO_")},
        "MELO_DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1:1/none",
        "MELO_DATA_DIR": str(tmp_path / "cli-data"),
        "MELO_SECRET_KEY": RUN_SECRET,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from server.cli import main; main()", "create-admin", "boss", "--password-stdin",
        env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate((password + "\n").encode()), timeout=120)
    text = out.decode(errors="replace")
    assert proc.returncode == 1, text
    assert "cannot reach the database" in text
    assert password not in text and "Traceback" not in text
