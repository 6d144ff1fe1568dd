"""Signing-key rollover across processes: ``melo-server keys rotate`` on the host while two real
``melo-server run`` processes share one database, without Redis (and with it).

A verifier may fetch JWKS from either process at any moment. Logins and refreshes go on through the
rollover, alternating between the processes; every access token issued must verify against the JWKS
that both processes serve right then, and the rollover must end with both signing with the new key.
"""

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.conftest import RUN_ID, RUN_SECRET
from tests.live import TEST_ENV, LiveServer, running_server

PROPAGATION_S = 2.0
TIMEOUT_S = 90.0
PASSWORD = "correct horse battery"


def _server_env(url: str, redis_url: str | None) -> dict[str, str]:
    env = {
        "MELO_DATABASE_URL": url,
        "MELO_SECRET_KEY": RUN_SECRET,
        "MELO_MIGRATE_ON_START": "false",
        "MELO_JOBS_ENABLED": "false",  # the monthly rotation stays out of this one
        "MELO_JWT_KEY_PROPAGATION_S": str(PROPAGATION_S),
    }
    if redis_url is not None:
        env.update({"MELO_REDIS_URL": redis_url, "MELO_REDIS_PREFIX": f"melotest:{RUN_ID}:rollover:"})
    return env


@pytest.fixture(params=["sqlite", "postgres", "postgres+redis"])
def two_servers(request: pytest.FixtureRequest, databases: Any,
                tmp_path: Path) -> Iterator[tuple[LiveServer, LiveServer, dict[str, str]]]:
    backend, _, bus = request.param.partition("+")
    redis_url = request.getfixturevalue("redis_url") if bus == "redis" else None
    env = _server_env(databases.url(backend), redis_url)
    with running_server(tmp_path / "a", env) as a, running_server(tmp_path / "b", env) as b:
        yield a, b, env


def _rotate_on_host(env: dict[str, str], data_dir: Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("melo-server")
    cmd = [str(script)] if script.exists() else [sys.executable, "-c", "from server.cli import main; main()"]
    host_env = {k: v for k, v in os.environ.items() if not k.startswith("MELO_")}
    host_env.update({**TEST_ENV, **env, "MELO_DATA_DIR": str(data_dir)})
    return subprocess.run([*cmd, "keys", "rotate"], env=host_env, capture_output=True, text=True, timeout=120,
                          check=False)


async def _jwks(http: httpx.AsyncClient, server: LiveServer) -> dict[str, dict[str, Any]]:
    r = await http.get(server.url + "/.well-known/jwks.json")
    assert r.status_code == 200, r.text
    return {k["kid"]: k for k in r.json()["keys"]}


async def test_every_token_issued_during_a_host_rotation_verifies_against_both_jwks(
    two_servers: tuple[LiveServer, LiveServer, dict[str, str]], tmp_path: Path
) -> None:
    a, b, env = two_servers
    servers = [a, b]
    async with httpx.AsyncClient(timeout=30.0) as http:
        name = f"roll{time.monotonic_ns() % 10**9}"
        r = await http.post(a.url + "/v1/auth/register", json={"username": name, "password": PASSWORD})
        assert r.status_code == 201, r.text
        tokens = r.json()
        old_kid = jwt.get_unverified_header(tokens["access_token"])["kid"]
        rotation = asyncio.create_task(asyncio.to_thread(_rotate_on_host, env, tmp_path / "host"))

        issued = 0
        signed_with_new: set[str] = set()
        new_kids: set[str] = set()
        async with asyncio.timeout(TIMEOUT_S):
            while not rotation.done() or signed_with_new != {a.url, b.url}:
                for i, server in enumerate(servers):
                    if issued % 5 == 4:  # mostly refreshes (cheap), now and then a login
                        r = await http.post(server.url + "/v1/auth/login",
                                            json={"username": name, "password": PASSWORD})
                    else:
                        r = await http.post(server.url + "/v1/auth/refresh",
                                            json={"refresh_token": tokens["refresh_token"]})
                    assert r.status_code == 200, r.text
                    issued += 1
                    if "/refresh" in str(r.url):
                        tokens = r.json()
                    access = r.json()["access_token"]
                    kid = jwt.get_unverified_header(access)["kid"]
                    # what a verifier reading JWKS from either process sees now
                    for jwks, where in zip(await asyncio.gather(*(_jwks(http, s) for s in servers)), servers,
                                           strict=True):
                        assert kid in jwks, f"token {issued} from {server.url} has kid {kid}, " \
                                            f"not in the JWKS of {where.url}: {sorted(jwks)}"
                        claims = jwt.decode(access, jwt.PyJWK(jwks[kid]).key, algorithms=["RS256"],
                                            audience="melo")
                        assert claims["sid"] == r.json()["session_id"]
                    # and the other process accepts it
                    other = servers[1 - i]
                    me = await http.get(other.url + "/v1/account", headers={"Authorization": f"Bearer {access}"})
                    assert me.status_code == 200, me.text
                    if kid != old_kid:
                        signed_with_new.add(server.url)
                        new_kids.add(kid)
        done = rotation.result()
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert len(new_kids) == 1, new_kids
    assert f"new JWT signing key {new_kids.pop()} is published" in done.stderr
