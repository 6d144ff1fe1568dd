"""Migrations applied to databases that already hold data, on SQLite, PostgreSQL and MariaDB.

Each test fills a new database at the revision before a migration, the way a server at that version
would have, then upgrades to head and starts the app on it.
"""

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from sqlalchemy import column, insert, table, text
from sqlalchemy.engine import make_url

from server.core.jwt_keys import JwtKeyRing
from server.core.secrets import SecretBox
from server.db.engine import create_engine
from server.db.migrate import upgrade, upgrade_async
from tests.conftest import DB_BACKENDS, RUN_ID, RUN_SECRET, bearer, make_settings, open_api, wait_signing_with

_suffixes = iter(range(1, 1_000_000))


@pytest.fixture(params=DB_BACKENDS)
def db_at_0004(request: pytest.FixtureRequest, databases: Any) -> str:
    """An empty database of each backend migrated to 0004 (sync: it runs asyncio.run)."""
    url = databases.empty(request.param, f"_m{RUN_ID}_{next(_suffixes)}")
    upgrade(url, "0004")
    return url


async def test_0005_keys_made_before_were_active_since_they_were_made(db_at_0004: str, tmp_path: Path) -> None:
    url = db_at_0004
    ring = JwtKeyRing(None, SecretBox(base64.b64decode(RUN_SECRET)),  # type: ignore[arg-type]
                      issuer="melo", audience="melo", access_ttl_s=900, propagation_s=10)
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    retired, retiring, current = (ring._new_key_row() for _ in range(3))
    rows = [  # (key, created, retired): one long retired, one still verifying its tokens, the one in use
        (retired, now - timedelta(days=60), now - timedelta(days=29)),
        (retiring, now - timedelta(days=30), now + timedelta(minutes=10)),
        (current, now - timedelta(minutes=5), None),
    ]
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:  # the tables as 0004 made them, not as the models say now
            keys = table("signing_keys", column("kid"), column("kind"), column("algorithm"), column("private_sealed"),
                         column("public_jwk"), column("created_at"), column("retired_at"))
            await conn.execute(insert(keys), [
                {"kid": key.kid, "kind": "jwt", "algorithm": "RS256", "private_sealed": key.private_sealed,
                 "public_jwk": key.public_jwk, "created_at": created, "retired_at": retired_at}
                for key, created, retired_at in rows
            ])
            state = table("server_state", column("key"), column("value"))
            await conn.execute(insert(state).values(key="jwt.active_kid", value=current.kid))
        await upgrade_async(url)
        async with engine.connect() as conn:
            migrated = {r.kid: (r.created_at, r.activates_at) for r in
                        await conn.execute(text("SELECT kid, created_at, activates_at FROM signing_keys"))}
    finally:
        await engine.dispose()
    for key, created, _ in rows:
        assert _same_time(migrated[key.kid][1], created), migrated[key.kid]

    async for api in open_api(make_settings(tmp_path, url), make_url(url).get_backend_name()):
        assert api.state.keys.active_kid == current.kid
        published = {k["kid"] for k in (await api.client.get("/.well-known/jwks.json")).json()["keys"]}
        assert published == {retiring.kid, current.kid}
        tokens = await api.register()
        assert jwt.get_unverified_header(tokens["access_token"])["kid"] == current.kid
        assert (await api.client.get("/v1/account", headers=bearer(tokens))).status_code == 200
        # and rotation works on the migrated rows
        new = await api.state.keys.rotate()
        assert new.kid in {k["kid"] for k in (await api.client.get("/.well-known/jwks.json")).json()["keys"]}
        await wait_signing_with(api, new.kid)


def _same_time(value: Any, expected: datetime) -> bool:
    """SQLite hands raw SQL back as text."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return bool(value.replace(tzinfo=None) == expected)
