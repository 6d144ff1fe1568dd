"""Two real ``melo-server run`` processes sharing a database and Redis: users on different nodes talk."""

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RUN_ID, RUN_SECRET
from tests.kit.wskit import Socket, open_socket
from tests.live import LiveServer, running_server, server_command
from tests.server.realtime.test_delivery import envelope, ping

_prefixes = iter(range(1, 1_000_000))


class Node:
    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.ws_url = server.url.replace("http://", "ws://") + "/v1/ws"


class User:
    def __init__(self, name: str, tokens: dict[str, Any]) -> None:
        self.name = name
        self.tokens = tokens

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens['access_token']}"}


async def register(node: Node, prefix: str) -> User:
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=node.server.url) as http:
        r = await http.post("/v1/auth/register", json={"username": name, "password": "correct horse battery"})
        assert r.status_code == 201, r.text
    return User(name, r.json())


async def call(node: Node, user: User, method: str, path: str, expect: int, **kw: Any) -> Any:
    async with httpx.AsyncClient(base_url=node.server.url, headers=user.headers()) as http:
        r = await http.request(method, path, **kw)
    assert r.status_code == expect, f"{method} {path} on {node.server.url}: {r.status_code} {r.text}"
    return r.json() if r.content else None


async def connect(node: Node, user: User) -> Socket:
    sock = await open_socket(node.ws_url, user.tokens["access_token"])
    await sock.until(lambda f: f["type"] == "caught_up")
    return sock


@pytest.fixture(params=["postgres", "mysql"])
def cluster(request: pytest.FixtureRequest, databases: Any, redis_url: str,
            tmp_path: Path) -> Iterator[tuple[Node, Node]]:
    url = databases.url(request.param)
    env = {
        "MELO_DATABASE_URL": url,
        "MELO_REDIS_URL": redis_url,
        "MELO_REDIS_PREFIX": f"melotest:{RUN_ID}:cluster{next(_prefixes)}:",
        "MELO_SECRET_KEY": RUN_SECRET,
        "MELO_MIGRATE_ON_START": "false",
    }
    with running_server(tmp_path / "a", env) as a, running_server(tmp_path / "b", env) as b:
        yield Node(a), Node(b)


async def test_users_on_two_nodes_talk(cluster: tuple[Node, Node]) -> None:
    a, b = cluster
    alice, bob, carol = await register(a, "alice"), await register(b, "bob"), await register(a, "carol")
    chat = (await call(a, alice, "POST", "/v1/chats", 201, json={
        "kind": "group", "title": "across", "members": [bob.name, carol.name]}))["id"]
    sa, sb = await connect(a, alice), await connect(b, bob)

    # a message sent over the socket on node A reaches node B, and one sent over REST on B reaches A
    ack = await sa.command("send", chat_id=chat, txn_id="t1", e2e=envelope("hello from A"))
    assert ack["type"] == "ack"
    got = await sb.until(lambda f: f["type"] == "message.created")
    assert got["data"]["id"] == ack["result"]["id"] and got["data"]["e2e"]["ciphertext"] == "hello from A"
    m2 = await call(b, bob, "POST", f"/v1/chats/{chat}/messages", 201, json={"txn_id": "t2", "e2e": envelope("B")})
    # (alice's own message.created may come after her ack: wait for bob's message itself)
    from_b = await sa.until(lambda f: f["type"] == "message.created" and f["data"]["id"] == m2["id"])
    assert from_b["data"]["e2e"]["ciphertext"] == "B" and from_b["data"]["sender"] == bob.name
    # a retry of the same send on the other node is still the same message
    again = await call(a, alice, "POST", f"/v1/chats/{chat}/messages", 201,
                       json={"txn_id": "t1", "e2e": envelope("hello from A")})
    assert again["id"] == ack["result"]["id"]

    # receipts and typing cross nodes
    assert (await sb.command("read", chat_id=chat, seq=got["seq"]))["type"] == "ack"
    receipt = await sa.until(lambda f: f["type"] == "receipt")
    assert receipt["data"]["user"] == bob.name and receipt["data"]["read_seq"] == got["seq"]
    await sb.command("typing", chat_id=chat, typing=True)
    typing = await sa.until(lambda f: f["type"] == "typing")
    assert (typing["user"], typing["typing"], typing["chat_id"]) == (bob.name, True, chat)

    # presence: carol comes online on node B, alice on A hears it; then offline
    sc = await connect(b, carol)
    on = await sa.until(lambda f: f["type"] == "presence" and f["user"] == carol.name)
    assert on["online"] is True
    # a second socket of carol on the other node: going away on B does not make her look offline
    sc2 = await connect(a, carol)
    await sc.ws.close()
    await ping(sc2)
    await sc2.ws.close()
    off = await sa.until(lambda f: f["type"] == "presence" and f["user"] == carol.name)
    assert off["online"] is False and off["last_seen"]

    # revocation on node A closes bob's socket on node B within a second
    t0 = time.monotonic()
    await call(a, bob, "POST", "/v1/auth/logout", 204)
    async with asyncio.timeout(1.0):
        revoked = await sb.until(lambda f: f["type"] == "session.revoked", timeout=1.0)
        await sb.ws.wait_closed()
    assert revoked["reason"] and sb.ws.close_code == 4003
    assert time.monotonic() - t0 < 1.5
    await sa.ws.close()


def test_workers_without_redis_are_refused(tmp_path: Path) -> None:
    cmd = [*server_command(0)[:-2], "--workers", "2"]
    env = {"PATH": "/usr/bin:/bin", "MELO_DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path)}
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "needs Redis" in out and "MELO_REDIS_URL" in out
    assert "Traceback" not in out
    assert sys.executable  # the command is this venv's melo-server
