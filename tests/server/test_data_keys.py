"""At-rest encryption of channel text: AES-256-GCM under a versioned data key, rotation with
background re-encryption during which reads never fail, and the old key retired when done."""

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import jwt
import pytest
from sqlalchemy import select, text

from server.core import data_keys
from server.db.models import Message, SigningKey
from tests.conftest import RUN_SECRET, Api, bearer, make_settings, open_api, wait_signing_with


async def _channel_with_messages(api: Api, n: int) -> tuple[dict, int, list[str]]:
    owner = await api.register()
    chat = (await api.client.post("/v1/chats", json={"kind": "channel", "title": "at rest"},
                                  headers=bearer(owner))).json()
    texts = [f"secret channel text {i} {os.urandom(4).hex()}" for i in range(n)]
    for i, t in enumerate(texts):
        r = await api.client.post(f"/v1/chats/{chat['id']}/messages", json={"txn_id": f"k{i}", "text": t},
                                  headers=bearer(owner))
        assert r.status_code == 201, r.text
    return owner, chat["id"], texts


async def _history(api: Api, owner: dict, chat_id: int) -> list[str]:
    r = await api.client.get(f"/v1/chats/{chat_id}/messages", params={"limit": 200}, headers=bearer(owner))
    assert r.status_code == 200, r.text
    return [m["text"] for m in r.json()["messages"]]


async def test_channel_text_is_sealed_at_rest(api: Api) -> None:
    _owner, chat_id, texts = await _channel_with_messages(api, 3)
    async with api.state.sessions() as db:
        rows = (await db.scalars(select(Message).where(Message.chat_id == chat_id))).all()
        assert all(r.key_id == api.state.data_keys.active_kid for r in rows)
        dump = " ".join(str(r.body) for r in rows)
        raw = " ".join(str(v) for v in (await db.execute(text("SELECT * FROM chat_events"))).all())
    for t in texts:
        assert t not in dump and t not in raw


async def test_rotation_reencrypts_while_reads_keep_working(api: Api) -> None:
    admin = await api.make_admin()
    owner, chat_id, texts = await _channel_with_messages(api, 40)
    old_kid = api.state.data_keys.active_kid
    r = await api.client.post("/v1/admin/keys/rotate", json={"jwt": False, "data": True}, headers=bearer(admin))
    assert r.status_code == 200, r.text
    new_kid = api.state.data_keys.active_kid
    assert new_kid != old_kid and r.json()["rotated"][0]["kid"] == new_kid
    reencrypt = api.state.data_keys._task
    assert reencrypt is not None
    # reads during the background pass never fail and always show the same text
    while not reencrypt.done():
        assert (await _history(api, owner, chat_id))[-40:] == texts
        await asyncio.sleep(0)  # let the pass advance between reads
    await api.state.data_keys.wait_reencrypted()
    assert (await _history(api, owner, chat_id))[-40:] == texts
    async with api.state.sessions() as db:
        kids = set((await db.scalars(select(Message.key_id).where(Message.chat_id == chat_id))).all())
        old = await db.get(SigningKey, old_kid)
    assert kids == {new_kid}
    assert old is not None and old.retired_at is not None
    audit = (await api.client.get("/v1/admin/audit", params={"action": "keys.rotate"}, headers=bearer(admin))).json()
    assert audit["entries"][0]["target"] == "data" and audit["entries"][0]["outcome"] == "ok"


async def test_melo_server_keys_rotate_data(sqlite_api: Api, tmp_path: Path) -> None:
    api = sqlite_api
    owner, chat_id, texts = await _channel_with_messages(api, 5)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MELO_")}
    env.update({"MELO_DATABASE_URL": api.state.settings.effective_database_url, "MELO_DATA_DIR": str(tmp_path),
                "MELO_SECRET_KEY": RUN_SECRET})
    argv = [sys.executable, "-c", "from server.cli import main; main()", "keys", "rotate", "--no-jwt", "--data"]
    proc = await asyncio.to_thread(subprocess.run, argv, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "rows re-encrypted" in proc.stderr
    await api.state.data_keys.reload()
    async with api.state.sessions() as db:
        kids = set((await db.scalars(select(Message.key_id).where(Message.chat_id == chat_id))).all())
        active = (await db.execute(text("SELECT value FROM server_state WHERE key = 'data.active_kid'"))).scalar_one()
    assert kids == {active}
    assert (await _history(api, owner, chat_id))[-5:] == texts


async def _sealed_with(api: Api, owner: dict, chat_id: int, txn: str) -> str | None:
    r = await api.client.post(f"/v1/chats/{chat_id}/messages", json={"txn_id": txn, "text": "after rotation"},
                              headers=bearer(owner))
    assert r.status_code == 201, r.text
    async with api.state.sessions() as db:
        return (await db.get(Message, r.json()["id"])).key_id  # type: ignore[union-attr]


@pytest.fixture
async def two_workers(sqlite_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[tuple[Api, Api]]:
    """Two app instances on one database and one Redis bus (same prefix), as two uvicorn workers are."""
    first = make_settings(tmp_path / "a", sqlite_url, redis_url=redis_url)
    second = make_settings(tmp_path / "b", sqlite_url, redis_url=redis_url, redis_prefix=first.redis_prefix)
    async for a in open_api(first, "sqlite"):
        async for b in open_api(second, "sqlite"):
            yield a, b


async def test_a_rotation_reaches_every_worker_over_the_bus(
    two_workers: tuple[Api, Api], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Worker b rotates; worker a publishes the new JWT key and seals with the new data key at once, and
    signs with the JWT key from its activation time, not when its rings go stale."""
    a, b = two_workers
    monkeypatch.setattr(data_keys, "STALE_AFTER_S", 3600.0)
    monkeypatch.setattr(a.state.keys, "propagation_s", 3600.0)
    reloaded = asyncio.Event()
    reload = a.state.data_keys.reload

    async def reload_and_tell() -> None:  # the bus handler reloads the JWT ring, then this one
        await reload()
        reloaded.set()

    monkeypatch.setattr(a.state.data_keys, "reload", reload_and_tell)
    owner, chat_id, texts = await _channel_with_messages(a, 2)
    assert await _sealed_with(a, owner, chat_id, "before") == a.state.data_keys.active_kid
    admin = await b.make_admin()
    r = await b.client.post("/v1/admin/keys/rotate", json={"jwt": True, "data": True}, headers=bearer(admin))
    assert r.status_code == 200, r.text
    new_jwt = next(k["kid"] for k in r.json()["rotated"] if k["kind"] == "jwt")
    new_data = b.state.data_keys.active_kid
    async with asyncio.timeout(10):
        await reloaded.wait()
    assert a.state.data_keys.active_kid == new_data
    assert new_jwt in {k["kid"] for k in (await a.client.get("/.well-known/jwks.json")).json()["keys"]}
    assert await _sealed_with(a, owner, chat_id, "after") == new_data
    await wait_signing_with(a, new_jwt)
    login = await a.login(owner["user"]["username"])
    assert jwt.get_unverified_header(login.json()["access_token"])["kid"] == new_jwt
    await b.state.data_keys.wait_reencrypted()
    assert (await _history(a, owner, chat_id))[-4:] == [*texts, "after rotation", "after rotation"]


async def test_without_the_bus_a_stale_ring_reloads_before_sealing(
    sqlite_api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process rotated (no Redis, so no bus event): the next seal here reads the ring again."""
    api = sqlite_api
    owner, chat_id, _texts = await _channel_with_messages(api, 1)
    async for other in open_api(make_settings(tmp_path / "other", api.state.settings.effective_database_url),
                                "sqlite"):
        new_kid = (await other.state.data_keys.rotate()).kid
    assert api.state.data_keys.active_kid != new_kid
    assert await _sealed_with(api, owner, chat_id, "fresh") != new_kid  # within the window: the loaded key
    monkeypatch.setattr(data_keys, "STALE_AFTER_S", 0.0)
    assert await _sealed_with(api, owner, chat_id, "stale") == new_kid
