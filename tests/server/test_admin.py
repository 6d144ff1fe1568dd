"""Admin API on every database: access control and audit of every route, then each action's behaviour;
and the host commands from a subprocess: ``melo-server create-admin`` bootstrapping or promoting an admin,
``melo-server check``."""

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
    for tokens in (first, second):  # their sessions are revoked: each says why, so no one is told to log in
        assert_error(await api.client.get("/v1/account", headers=bearer(tokens)), 401, "account_banned")
        r = await api.client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert_error(r, 401, "account_banned")
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
    assert_error(await api.client.get("/v1/account", headers=bearer(first)), 401, "session_revoked")
    r = await api.client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert_error(r, 401, "session_revoked")


async def test_deactivate(api: Api) -> None:
    admin = await api.make_admin()
    h = bearer(admin)
    name = api.name("deact")
    tokens = await api.register(name)
    viewer = bearer(await api.register())
    r = await api.client.post(f"/v1/admin/users/{name}/deactivate", headers=h)
    assert r.status_code == 200 and r.json()["deactivated"] is True
    assert_error(await api.client.get("/v1/account", headers=bearer(tokens)), 401, "account_deactivated")
    r = await api.client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert_error(r, 401, "account_deactivated")
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


def host_env(**settings: str) -> dict[str, str]:
    """The environment of a host command: this machine's, with only the given MELO_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MELO_")}
    env.update({"MELO_ARGON2_TIME_COST": "2", "MELO_ARGON2_MEMORY_KIB": "19456", **settings})
    return env


async def melo_server(env: dict[str, str], *args: str, stdin: str = "") -> tuple[int, str]:
    """Run ``melo-server ARGS`` with ``stdin``: its exit code and its output (stdout and stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from server.cli import main; main()", *args, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(stdin.encode()), timeout=120)
    return proc.returncode or 0, out.decode(errors="replace")


async def test_create_admin_cli_bootstraps_an_admin(api: Api, db_url: str, tmp_path: Path) -> None:
    name = api.name("Boss")
    password = "bootstrap-" + os.urandom(8).hex()
    env = host_env(MELO_DATABASE_URL=db_url, MELO_DATA_DIR=str(tmp_path / "cli-data"), MELO_SECRET_KEY=RUN_SECRET)

    async def run(secret: str) -> tuple[int, str]:
        return await melo_server(env, "create-admin", name, "--password-stdin", stdin=secret + "\n")

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
    env = host_env(MELO_DATABASE_URL="postgresql+asyncpg://postgres@127.0.0.1:1/none",
                   MELO_DATA_DIR=str(tmp_path / "cli-data"), MELO_SECRET_KEY=RUN_SECRET)
    code, text = await melo_server(env, "create-admin", "boss", "--password-stdin", stdin=password + "\n")
    assert code == 1, text
    assert "cannot reach the database" in text
    assert password not in text and "Traceback" not in text


async def _host_entries(api: Api, admin: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [e for e in await _audit(api, admin, limit=50, action=action) if e["actor"] == "host"]


async def test_create_admin_promotes_an_existing_user_keeping_password_and_sessions(
    api: Api, db_url: str, tmp_path: Path
) -> None:
    dave = await api.register()
    name = dave["user"]["username"]
    env = host_env(MELO_DATABASE_URL=db_url, MELO_DATA_DIR=str(tmp_path / "cli-data"), MELO_SECRET_KEY=RUN_SECRET)
    other = "not-daves-password-" + os.urandom(4).hex()
    # a provisioning script that always pipes a password: an existing user's is kept, stdin is not read
    code, out = await melo_server(env, "create-admin", name, "--password-stdin", stdin=other + "\n")
    assert code == 0, out
    assert "password is kept" in out and "--reset-password" in out and other not in out
    assert (await api.client.get("/v1/account", headers=bearer(dave))).json()["is_admin"] is True
    assert (await api.login(name, PASSWORD)).status_code == 200
    assert_error(await api.login(name, other), 401)
    r = await api.client.post("/v1/auth/refresh", json={"refresh_token": dave["refresh_token"]})
    assert r.status_code == 200, r.text
    dave = r.json()
    # no password asked at all (no stdin, no terminal): promoting needs none
    code, out = await melo_server(env, "create-admin", name)
    assert code == 0 and "already an admin" in out, out
    entries = await _host_entries(api, dave, "users.create_admin")
    assert [e["target"] for e in entries[:2]] == [name, name]
    assert entries[0]["outcome"] == "ok" and entries[0]["details"] == {
        "created": False, "was_admin": True, "password_replaced": False, "sessions_revoked": 0}
    assert entries[1]["details"]["was_admin"] is False


async def test_create_admin_reset_password_replaces_it_and_revokes_sessions(
    api: Api, db_url: str, tmp_path: Path
) -> None:
    dave = await api.register()
    second = (await api.login(dave["user"]["username"])).json()
    name = dave["user"]["username"]
    env = host_env(MELO_DATABASE_URL=db_url, MELO_DATA_DIR=str(tmp_path / "cli-data"), MELO_SECRET_KEY=RUN_SECRET)
    new_password = "replaced-" + os.urandom(8).hex()
    code, out = await melo_server(env, "create-admin", name, "--reset-password", "--password-stdin",
                                  stdin="short\n")
    assert code == 1 and "at least 10 characters" in out, out
    assert (await api.login(name, PASSWORD)).status_code == 200  # a refused new password changes nothing
    code, out = await melo_server(env, "create-admin", name, "--reset-password", "--password-stdin",
                                  stdin=new_password + "\n")
    assert code == 0, out
    assert new_password not in out and "3 session(s) revoked" in out
    assert_error(await api.login(name, PASSWORD), 401)
    tokens = (await api.login(name, new_password)).json()
    for old in (dave, second):  # this worker never heard of the revocation: the database says so
        assert_error(await api.client.get("/v1/account", headers=bearer(old)), 401, "session_revoked")
        assert_error(await api.client.post("/v1/auth/refresh", json={"refresh_token": old["refresh_token"]}),
                     401, "session_revoked")
    assert (await api.client.get("/v1/account", headers=bearer(tokens))).json()["is_admin"] is True
    entry = (await _host_entries(api, tokens, "users.create_admin"))[0]
    assert (entry["target"], entry["details"]["password_replaced"], entry["details"]["sessions_revoked"]) == (
        name, True, 3)


async def test_a_refused_create_admin_leaves_no_database_and_no_secret(tmp_path: Path) -> None:
    data = tmp_path / "fresh"
    env = host_env(MELO_DATA_DIR=str(data))  # the zero-configuration SQLite file and secret.key
    for bad in ("short\n", "boss\n", "pass\x01word-long\n"):
        code, out = await melo_server(env, "create-admin", "boss", "--password-stdin", stdin=bad)
        assert code == 1 and "password must" in out, out
        assert not (data / "melo.sqlite3").exists() and not (data / "secret.key").exists()
    code, out = await melo_server(env, "create-admin", "no spaces allowed", "--password-stdin",
                                  stdin="long enough password\n")
    assert code == 1 and "username must be" in out, out
    assert not (data / "melo.sqlite3").exists() and not (data / "secret.key").exists()
    code, out = await melo_server(env, "create-admin", "boss", "--password-stdin", stdin="long enough password\n")
    assert code == 0 and "admin boss created" in out, out
    assert (data / "melo.sqlite3").is_file() and (data / "secret.key").is_file()


async def test_check_names_the_database_and_redis_it_reached_without_passwords(
    sqlite_url: str, redis_url: str, tmp_path: Path
) -> None:
    data = str(tmp_path / "check-data")
    code, out = await melo_server(host_env(MELO_DATA_DIR=data, MELO_DATABASE_URL=sqlite_url,
                                           MELO_REDIS_URL=redis_url), "check")
    assert code == 0, out
    assert f"database: ok ({sqlite_url})" in out and f"redis: ok ({redis_url})" in out
    # wrong places, with passwords in them: named, passwords hidden
    db = "postgresql://melo:db-s3cret@127.0.0.1:1/melo"
    redis = "redis://:redis-s3cret@127.0.0.1:1/0?password=q-s3cret"
    code, out = await melo_server(host_env(MELO_DATA_DIR=data, MELO_DATABASE_URL=db, MELO_REDIS_URL=redis), "check")
    assert code == 3, out
    assert "database: unreachable (postgresql://melo:***@127.0.0.1:1/melo" in out
    assert "redis: unreachable (redis://:***@127.0.0.1:1/0?password=***" in out
    assert "s3cret" not in out
