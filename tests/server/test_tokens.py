"""Access tokens: pinned verification (JWT negatives), claims, JWKS, key rotation, refresh rotation."""

import asyncio
import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import update
from sqlalchemy.engine import make_url

from server.db.models import SigningKey
from server.db.types import utcnow
from tests.conftest import RUN_SECRET, Api, bearer, make_settings, open_api, wait_signing_with

ME = "/v1/account"
ROOT = Path(__file__).resolve().parents[2]


# -- helpers ---------------------------------------------------------------------------------------------
def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})


def real_key(api: Api) -> tuple[str, Any]:
    ring = api.state.keys
    return ring.active_kid, ring._keys[ring.active_kid].private


def good_claims(api: Api, tokens: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The claims of a valid access token for this session, with changes (None removes a claim)."""
    _, claims = unverified(tokens["access_token"])
    now = int(time.time())
    claims.update({"iat": now, "nbf": now - 5, "exp": now + 600, "jti": uuid.uuid4().hex})
    for name, value in changes.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def sign_real(api: Api, claims: dict[str, Any]) -> str:
    kid, private = real_key(api)
    return jwt.encode(claims, private, algorithm="RS256", headers={"kid": kid})


def assert_error(r: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


async def assert_refused(api: Api, token: str, code: str = "invalid_token") -> None:
    assert_error(await api.client.get(ME, headers=bearer(token)), 401, code)


@pytest.fixture
async def user(api: Api) -> dict[str, Any]:
    tokens = await api.register()
    assert (await api.client.get(ME, headers=bearer(tokens))).status_code == 200
    return tokens


# -- claims ----------------------------------------------------------------------------------------------
async def test_access_token_header_and_claims(api: Api, user: dict[str, Any]) -> None:
    header, claims = unverified(user["access_token"])
    assert header["alg"] == "RS256"
    assert header["kid"] == api.state.keys.active_kid
    for name in ("jti", "sub", "sid", "did", "aud", "iss", "typ", "exp", "iat"):
        assert name in claims, name
    assert claims["typ"] == "access"
    assert claims["sub"] == str(user["user"]["id"])
    assert claims["sid"] == user["session_id"]
    assert claims["did"] == user["device_id"]
    assert claims["aud"] == api.state.settings.jwt_audience
    assert claims["iss"] == api.state.settings.jwt_issuer
    assert 0 < claims["exp"] - claims["iat"] <= 900
    other = await api.login(user["user"]["username"])
    assert unverified(other.json()["access_token"])[1]["jti"] != claims["jti"]


# -- negatives -------------------------------------------------------------------------------------------
async def test_alg_none_refused(api: Api, user: dict[str, Any]) -> None:
    kid, _ = real_key(api)
    claims = good_claims(api, user)
    for alg in ("none", "None", "NONE"):
        head = b64url(json.dumps({"alg": alg, "typ": "JWT", "kid": kid}).encode())
        body = b64url(json.dumps(claims).encode())
        await assert_refused(api, f"{head}.{body}.")
        await assert_refused(api, f"{head}.{body}")


async def test_hs256_with_public_key_as_secret_refused(api: Api, user: dict[str, Any]) -> None:
    """The classic algorithm confusion: HMAC keyed with the server's published RSA public key."""
    kid, private = real_key(api)
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = good_claims(api, user)
    for secret in (pem, pem.strip()):
        head = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
        body = b64url(json.dumps(claims).encode())
        sig = b64url(hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest())
        await assert_refused(api, f"{head}.{body}.{sig}")


async def test_unknown_kid_and_foreign_key_refused(api: Api, user: dict[str, Any]) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = good_claims(api, user)
    made_up_kid = "jwt-made-up-" + uuid.uuid4().hex
    made_up = jwt.encode(claims, stranger, algorithm="RS256", headers={"kid": made_up_kid})
    await assert_refused(api, made_up)
    real_kid, _ = real_key(api)
    forged = jwt.encode(claims, stranger, algorithm="RS256", headers={"kid": real_kid})
    await assert_refused(api, forged)
    no_kid = jwt.encode(claims, real_key(api)[1], algorithm="RS256")
    await assert_refused(api, no_kid)


async def test_wrong_aud_iss_typ_refused_though_signed_by_server(api: Api, user: dict[str, Any]) -> None:
    # The control: the same helper with no changes makes a token the server accepts.
    ok = sign_real(api, good_claims(api, user))
    assert (await api.client.get(ME, headers=bearer(ok))).status_code == 200
    for changes in (
        {"aud": "someone-else"},
        {"aud": ["someone-else"]},
        {"iss": "https://evil.example"},
        {"typ": "refresh"},
        {"typ": "ACCESS"},
        {"sub": "not-a-number"},
    ):
        await assert_refused(api, sign_real(api, good_claims(api, user, **changes)))


async def test_missing_required_claims_refused(api: Api, user: dict[str, Any]) -> None:
    for name in ("sid", "sub", "did", "jti", "exp", "typ", "aud", "iss", "iat"):
        await assert_refused(api, sign_real(api, good_claims(api, user, **{name: None})))


async def test_expired_token_refused(api: Api, user: dict[str, Any]) -> None:
    now = int(time.time())
    expired = sign_real(api, good_claims(api, user, iat=now - 1000, nbf=now - 1000, exp=now - 60))
    await assert_refused(api, expired, "token_expired")


async def test_refresh_token_and_garbage_as_bearer_refused(api: Api, user: dict[str, Any]) -> None:
    await assert_refused(api, user["refresh_token"])
    await assert_refused(api, "a.b.c")
    r = await api.client.get(ME)
    assert_error(r, 401, "unauthenticated")
    r = await api.client.get(ME, headers={"Authorization": "Basic " + user["access_token"]})
    assert_error(r, 401, "unauthenticated")


# -- the session a token names ---------------------------------------------------------------------------
async def end_session_in_database(api: Api, session_id: str) -> None:
    """What another server process without Redis does when it revokes: only the database knows."""
    from server.db.models import DeviceSession

    async with api.state.sessions() as db:
        await db.execute(update(DeviceSession).where(DeviceSession.id == session_id)
                         .values(revoked_at=utcnow(), revoke_reason="logout"))
        await db.commit()


async def test_token_must_name_a_live_session_of_its_user(api: Api, user: dict[str, Any]) -> None:
    # signed by the server, but for a session that never existed
    await assert_refused(api, sign_real(api, good_claims(api, user, sid=uuid.uuid4().hex)))
    # another user's live session, or this user's session with another device id
    other = await api.register()
    await assert_refused(api, sign_real(api, good_claims(api, user, sid=other["session_id"])))
    await assert_refused(api, sign_real(api, good_claims(api, user, did="DNOTTHISDEVICE")))
    # a session ended where this worker's revocation store never heard of it
    second = (await api.login(user["user"]["username"])).json()
    await end_session_in_database(api, second["session_id"])
    assert not await api.state.revocations.is_revoked(second["session_id"])
    assert_error(await api.client.get(ME, headers=bearer(second)), 401, "session_revoked")
    # the control: the same helper for the real session is accepted
    assert (await api.client.get(ME, headers=bearer(sign_real(api, good_claims(api, user))))).status_code == 200


async def test_live_session_lookup_is_cached_until_revoked(sqlite_api: Api) -> None:
    """Authentication is on every request: the session row is read once, not per request, and a revocation
    drops the cached answer at once."""
    from sqlalchemy import event

    api = sqlite_api
    tokens = await api.register()
    reads: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM sessions" in statement:
            reads.append(statement)

    engine = api.state.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        for _ in range(5):
            assert (await api.client.get(ME, headers=bearer(tokens))).status_code == 200
        assert len(reads) == 1, reads
        r = await api.client.delete(f"/v1/sessions/{tokens['session_id']}", headers=bearer(tokens))
        assert r.status_code == 204, r.text
        assert tokens["session_id"] not in api.state.live_sessions._live
        assert_error(await api.client.get(ME, headers=bearer(tokens)), 401, "session_revoked")
    finally:
        event.remove(engine, "before_cursor_execute", count)


# -- JWKS ------------------------------------------------------------------------------------------------
async def test_jwks_publishes_public_key_only(api: Api, user: dict[str, Any]) -> None:
    jwks = (await api.client.get("/.well-known/jwks.json")).json()
    kid = api.state.keys.active_kid
    keys = {k["kid"]: k for k in jwks["keys"]}
    assert kid in keys
    for key in jwks["keys"]:
        assert key["kty"] == "RSA" and key["alg"] == "RS256" and key["use"] == "sig"
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key), key
    # the published key verifies the token the server issued
    public = jwt.PyJWK(keys[kid]).key
    claims = jwt.decode(user["access_token"], public, algorithms=["RS256"],
                        audience=api.state.settings.jwt_audience)
    assert claims["sid"] == user["session_id"]


# -- rotation --------------------------------------------------------------------------------------------
async def _jwks_kids(api: Api) -> set[str]:
    return {k["kid"] for k in (await api.client.get("/.well-known/jwks.json")).json()["keys"]}


async def newest_jwt_kid(api: Api) -> str:
    return [k.kid for k in await api.state.keys.list_keys() if k.kind == "jwt"][-1]


async def _check_rotated(api: Api, old_tokens: dict[str, Any], old_kid: str, new_kid: str) -> None:
    assert new_kid != old_kid
    # published at once, used once every worker publishes it
    assert {old_kid, new_kid} <= await _jwks_kids(api)
    await wait_signing_with(api, new_kid)
    # old tokens pass until they expire
    assert (await api.client.get(ME, headers=bearer(old_tokens))).status_code == 200
    # new tokens, by login and by refresh, carry the new kid and work
    login = await api.login(old_tokens["user"]["username"])
    assert login.status_code == 200
    assert jwt.get_unverified_header(login.json()["access_token"])["kid"] == new_kid
    r = await api.client.post("/v1/auth/refresh", json={"refresh_token": old_tokens["refresh_token"]})
    assert r.status_code == 200, r.text
    assert jwt.get_unverified_header(r.json()["access_token"])["kid"] == new_kid
    assert (await api.client.get(ME, headers=bearer(r.json()))).status_code == 200


async def test_rotate_in_process(api: Api, user: dict[str, Any]) -> None:
    old_kid = api.state.keys.active_kid
    row = await api.state.keys.rotate()
    await _check_rotated(api, user, old_kid, row.kid)


async def test_a_new_key_is_published_before_any_token_carries_it(db_url: str, tmp_path: Path) -> None:
    """Publish, then activate: until its activation time the new key is in JWKS and nothing is signed
    with it; the old key is labelled with a retirement still to come."""
    settings = make_settings(tmp_path, db_url, jwt_key_propagation_s=600)
    async for api in open_api(settings, make_url(db_url).get_backend_name()):
        admin = await api.make_admin()
        old_kid = api.state.keys.active_kid
        new = await api.state.keys.rotate()
        assert new.activates_at is not None
        assert 590 < (new.activates_at - utcnow()).total_seconds() <= 600
        assert {old_kid, new.kid} <= await _jwks_kids(api)
        login = (await api.login(admin["user"]["username"])).json()
        assert jwt.get_unverified_header(login["access_token"])["kid"] == old_kid
        listed = {k["kid"]: k for k in (await api.client.get("/v1/admin/keys", headers=bearer(admin))).json()["keys"]}
        assert (listed[old_kid]["active"], listed[new.kid]["active"]) == (True, False)
        in_use = {k["kind"] for k in listed.values() if k["active"]}
        assert in_use == {"jwt", "data", "vapid"}, listed  # push signs with its VAPID key: it is in use
        assert listed[new.kid]["activates_at"] is not None and listed[new.kid]["retired_at"] is None
        old_retires = datetime.fromisoformat(listed[old_kid]["retired_at"])
        assert old_retires > new.activates_at + timedelta(seconds=settings.access_token_ttl_seconds)
        # the activation time comes (moved to now in the database, as if ten minutes had passed)
        async with api.state.sessions() as db:
            await db.execute(update(SigningKey).where(SigningKey.kid == new.kid).values(activates_at=utcnow()))
            await db.commit()
        await api.state.keys.reload()
        login = (await api.login(admin["user"]["username"])).json()
        assert jwt.get_unverified_header(login["access_token"])["kid"] == new.kid
        assert (await api.client.get(ME, headers=bearer(login))).status_code == 200


async def test_rotate_by_admin_route(api: Api) -> None:
    admin = await api.make_admin()
    plain = await api.register()
    old_kid = api.state.keys.active_kid
    denied = await api.client.post("/v1/admin/keys/rotate", json={"jwt": True}, headers=bearer(plain))
    assert_error(denied, 403, "admin_required")
    assert api.state.keys.active_kid == old_kid
    r = await api.client.post("/v1/admin/keys/rotate", json={"jwt": True}, headers=bearer(admin))
    assert r.status_code == 200, r.text
    rotated = r.json()["rotated"][0]
    assert rotated["kid"] == await newest_jwt_kid(api)
    assert datetime.fromisoformat(rotated["activates_at"]) > datetime.fromisoformat(rotated["created_at"])
    await _check_rotated(api, admin, old_kid, rotated["kid"])


async def test_rotate_by_cli_command(sqlite_api: Api, tmp_path: Path) -> None:
    api = sqlite_api
    tokens = await api.register()
    old_kid = api.state.keys.active_kid
    settings = api.state.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("MELO_")}
    env.update({
        "MELO_DATABASE_URL": settings.effective_database_url,
        "MELO_DATA_DIR": str(settings.data_dir),
        "MELO_SECRET_KEY": RUN_SECRET,
        "MELO_ARGON2_TIME_COST": "2",
        "MELO_ARGON2_MEMORY_KIB": "19456",
        "MELO_JWT_KEY_PROPAGATION_S": str(settings.jwt_key_propagation_s),
    })
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", "from server.cli import main; main()", "keys", "rotate"],
        env=env, capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    new_kid = await newest_jwt_kid(api)
    assert new_kid != old_kid and f"{new_kid} is published" in proc.stderr
    await _check_rotated(api, tokens, old_kid, new_kid)
    # a host command is audited with the actor "host"
    admin = await api.make_admin()
    r = await api.client.get("/v1/admin/audit", params={"action": "keys.rotate"}, headers=bearer(admin))
    entry = next(e for e in r.json()["entries"] if e["details"].get("jwt") == new_kid)
    assert (entry["actor"], entry["target"], entry["outcome"]) == ("host", "jwt", "ok")


async def test_key_rotated_by_another_process_verifies_at_once(api: Api, tmp_path: Path) -> None:
    """A token signed with a key this instance has not loaded yet makes it reload the ring."""
    tokens = await api.register()
    settings = make_settings(tmp_path / "second", api.state.settings.effective_database_url)
    async for second in open_api(settings, api.backend):
        new_kid = (await second.state.keys.rotate()).kid
        await wait_signing_with(second, new_kid)
        assert new_kid not in api.state.keys._keys
        login = await second.login(tokens["user"]["username"])
        assert jwt.get_unverified_header(login.json()["access_token"])["kid"] == new_kid
        r = await api.client.get(ME, headers=bearer(login.json()))
        assert r.status_code == 200, r.text
        assert r.json()["session_id"] == login.json()["session_id"]
        assert new_kid in await _jwks_kids(api)
        # the old key still verifies on the second instance
        assert (await second.client.get(ME, headers=bearer(tokens))).status_code == 200


# -- refresh ---------------------------------------------------------------------------------------------
async def _refresh(api: Api, token: str) -> Any:
    return await api.client.post("/v1/auth/refresh", json={"refresh_token": token})


async def test_refresh_rotates_and_reuse_revokes_the_session(api: Api, user: dict[str, Any]) -> None:
    first = await _refresh(api, user["refresh_token"])
    assert first.status_code == 200, first.text
    t1 = first.json()
    assert t1["refresh_token"] != user["refresh_token"]
    assert t1["session_id"] == user["session_id"] and t1["device_id"] == user["device_id"]
    second = await _refresh(api, t1["refresh_token"])
    assert second.status_code == 200, second.text
    t2 = second.json()
    assert len({user["refresh_token"], t1["refresh_token"], t2["refresh_token"]}) == 3
    assert (await api.client.get(ME, headers=bearer(t2))).status_code == 200

    # the spent first token comes back: someone copied it; the whole session ends
    reused = await _refresh(api, user["refresh_token"])
    assert_error(reused, 401, "refresh_token_reused")
    for access in (user, t1, t2):
        assert_error(await api.client.get(ME, headers=bearer(access)), 401, "session_revoked")
    assert_error(await _refresh(api, t2["refresh_token"]), 401, "session_revoked")
    # the user's other sessions are untouched
    other = await api.login(user["user"]["username"])
    assert other.status_code == 200
    assert (await api.client.get(ME, headers=bearer(other.json()))).status_code == 200
    assert (await _refresh(api, other.json()["refresh_token"])).status_code == 200


async def test_unknown_refresh_token_refused(api: Api) -> None:
    assert_error(await _refresh(api, "not-a-token-" + uuid.uuid4().hex), 401, "invalid_token")


async def test_concurrent_refreshes_one_wins(api: Api, user: dict[str, Any]) -> None:
    """20 refreshes with one token at once: exactly one succeeds, none errors, on every database."""
    results = await asyncio.gather(*(_refresh(api, user["refresh_token"]) for _ in range(20)))
    statuses = sorted(r.status_code for r in results)
    assert statuses.count(200) == 1, [(r.status_code, r.text[:200]) for r in results]
    for r in results:
        if r.status_code != 200:
            assert_error(r, 401)
            assert r.json()["error"]["code"] in ("refresh_token_reused", "session_revoked"), r.text
    # every loser presented a spent token, so the session is over: nothing from it works now
    winner = next(r.json() for r in results if r.status_code == 200)
    assert_error(await api.client.get(ME, headers=bearer(winner)), 401, "session_revoked")
    assert_error(await _refresh(api, winner["refresh_token"]), 401, "session_revoked")
