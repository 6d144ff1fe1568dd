"""The E2E key directory and the to-device queue, on every database backend."""

import asyncio
from typing import Any

from melo_protocol.crypto import DeviceAccount
from tests.conftest import Api, bearer


async def _device(api: Api, tokens: dict[str, Any], otks: int = 0, fallback: bool = False) -> DeviceAccount:
    account = DeviceAccount(tokens["user"]["id"], tokens["device_id"])
    body: dict[str, Any] = {"device_keys": account.device_keys()}
    if otks:
        body["one_time_keys"] = account.generate_one_time_keys(otks)
    if fallback:
        account.generate_fallback_key()
        body["fallback_key"] = account.fallback_key()
    r = await api.client.post("/v1/keys/upload", json=body, headers=bearer(tokens))
    assert r.status_code == 200, r.text
    account.mark_published()
    return account


async def _dm(api: Api, a: dict[str, Any], b: dict[str, Any]) -> int:
    r = await api.client.post("/v1/chats/direct", json={"username": b["user"]["username"]}, headers=bearer(a))
    assert r.status_code in (200, 201), r.text
    return int(r.json()["id"])


async def test_upload_checks_signatures_and_owner(api: Api) -> None:
    alice = await api.register()
    account = DeviceAccount(alice["user"]["id"], alice["device_id"])
    forged = account.device_keys()
    forged["keys"][f"curve25519:{alice['device_id']}"] = DeviceAccount(1, "X").curve25519
    r = await api.client.post("/v1/keys/upload", json={"device_keys": forged}, headers=bearer(alice))
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_keys"
    other = DeviceAccount(alice["user"]["id"], "DOTHERDEVICE").device_keys()
    r = await api.client.post("/v1/keys/upload", json={"device_keys": other}, headers=bearer(alice))
    assert r.status_code == 400
    await _device(api, alice, otks=5)
    bad_otk = {"AAAA": {"key": DeviceAccount(1, "X").curve25519, "signatures": {}}}
    r = await api.client.post("/v1/keys/upload", json={"one_time_keys": bad_otk}, headers=bearer(alice))
    assert r.status_code == 400
    count = (await api.client.get("/v1/keys/count", headers=bearer(alice))).json()
    assert count == {"one_time_key_count": 5, "fallback_unused": False}


async def test_query_only_for_users_sharing_a_chat(api: Api) -> None:
    alice, bob, stranger = await api.register(), await api.register(), await api.register()
    await _device(api, bob)
    q = await api.client.post("/v1/keys/query", json={"users": [bob["user"]["username"]]}, headers=bearer(stranger))
    assert q.status_code == 200 and q.json()["devices"] == {}
    await _dm(api, alice, bob)
    q = await api.client.post("/v1/keys/query", json={"users": [bob["user"]["username"]]}, headers=bearer(alice))
    devices = q.json()["devices"][bob["user"]["username"]]
    assert list(devices) == [bob["device_id"]]
    assert "signatures" in devices[bob["device_id"]]


async def test_concurrent_claims_never_share_a_key_then_fallback(api: Api) -> None:
    bob = await api.register()
    await _device(api, bob, otks=30, fallback=True)
    claimers = [await api.register() for _ in range(5)]
    for c in claimers:
        await _dm(api, c, bob)
    name, dev = bob["user"]["username"], bob["device_id"]

    async def claim(c: dict[str, Any]) -> dict[str, Any]:
        r = await api.client.post("/v1/keys/claim", json={"devices": {name: [dev]}}, headers=bearer(c))
        assert r.status_code == 200, r.text
        return r.json()

    results = await asyncio.gather(*(claim(claimers[i % 5]) for i in range(50)))
    one_time = [k for r in results if f"{name}/{dev}" not in r["fallback_used"]
                for k in r["one_time_keys"][name][dev]]
    fallback = [r for r in results if f"{name}/{dev}" in r["fallback_used"]]
    assert len(one_time) == 30 and len(set(one_time)) == 30  # each handed out exactly once
    assert len(fallback) == 20
    count = (await api.client.get("/v1/keys/count", headers=bearer(bob))).json()
    assert count["one_time_key_count"] == 0 and count["fallback_unused"] is False


async def test_to_device_queue_and_revocation_forgets_device(api: Api) -> None:
    alice, bob = await api.register(), await api.register()
    await _device(api, alice)
    await _device(api, bob)
    await _dm(api, alice, bob)
    name = bob["user"]["username"]
    r = await api.client.post("/v1/to-device", json={"type": "m.test", "messages": {name: {"*": {"n": 1}}}},
                              headers=bearer(alice))
    assert r.status_code == 202 and r.json() == {"queued": 1}
    got = (await api.client.get("/v1/to-device", headers=bearer(bob))).json()["messages"]
    assert [(m["type"], m["content"], m["sender"]) for m in got] == [("m.test", {"n": 1}, alice["user"]["username"])]
    r = await api.client.post("/v1/to-device/ack", json={"up_to": got[-1]["id"]}, headers=bearer(bob))
    assert r.json() == {"removed": 1}
    assert (await api.client.get("/v1/to-device", headers=bearer(bob))).json()["messages"] == []
    # ack by ids forgets exactly those: a lower id the device never fetched (it committed late) stays
    for n in (2, 3):
        r = await api.client.post("/v1/to-device", json={"type": "m.test", "messages": {name: {"*": {"n": n}}}},
                                  headers=bearer(alice))
        assert r.status_code == 202
    late, fetched = (await api.client.get("/v1/to-device", headers=bearer(bob))).json()["messages"]
    assert late["id"] < fetched["id"]
    r = await api.client.post("/v1/to-device/ack", json={"ids": [fetched["id"]]}, headers=bearer(bob))
    assert r.json() == {"removed": 1}
    left = (await api.client.get("/v1/to-device", headers=bearer(bob))).json()["messages"]
    assert [m["content"] for m in left] == [{"n": 2}]
    for bad in ({}, {"ids": [late["id"]], "up_to": late["id"]}, {"ids": []}, {"ids": list(range(501))}):
        r = await api.client.post("/v1/to-device/ack", json=bad, headers=bearer(bob))
        assert r.status_code == 422 and "error" in r.json(), (bad, r.text)
    # alice cannot forget bob's queue by naming his ids
    r = await api.client.post("/v1/to-device/ack", json={"ids": [late["id"]]}, headers=bearer(alice))
    assert r.json() == {"removed": 0}
    assert len((await api.client.get("/v1/to-device", headers=bearer(bob))).json()["messages"]) == 1
    stranger = await api.register()
    r = await api.client.post("/v1/to-device", json={"type": "m.test", "messages": {name: {"*": {}}}},
                              headers=bearer(stranger))
    assert r.status_code == 404
    # bob logs out: his device leaves the directory
    assert (await api.client.post("/v1/auth/logout", headers=bearer(bob))).status_code == 204
    q = await api.client.post("/v1/keys/query", json={"users": [name]}, headers=bearer(alice))
    assert q.json()["devices"][name] == {}
