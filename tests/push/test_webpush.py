"""Web Push: RFC 8291 byte for byte, a real push service on loopback that checks VAPID (RFC 8292) and
decrypts the body with the subscription's private key, 410 removing a subscription, retries on 5xx."""

import asyncio
import base64
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

import http_ece
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from server.db.models import PushSubscription
from tests.conftest import Api, bearer


def b64u(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# ---- RFC 8291 Appendix A ----------------------------------------------------------------------------
RFC = {
    "plaintext": b"When I grow up, I want to be a watermelon",
    "as_private": "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw",
    "as_public": "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8",
    "ua_private": "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94",
    "ua_public": "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
    "salt": "DGv6ra1nlYgDCS1FRnbzlw",
    "auth": "BTBZMqHH6r4Tts7J_aSIgg",
    "body": "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6"
            "PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN",
}


def _private(d_b64: str) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int.from_bytes(unb64u(d_b64), "big"), ec.SECP256R1())


def test_rfc8291_appendix_a_byte_for_byte() -> None:
    as_key = _private(RFC["as_private"])
    as_public = as_key.public_key().public_bytes(serialization.Encoding.X962,
                                                 serialization.PublicFormat.UncompressedPoint)
    assert b64u(as_public) == RFC["as_public"]
    body = http_ece.encrypt(RFC["plaintext"], salt=unb64u(RFC["salt"]), private_key=as_key,
                            dh=unb64u(RFC["ua_public"]), auth_secret=unb64u(RFC["auth"]),
                            rs=4096, version="aes128gcm")
    assert b64u(body) == RFC["body"]
    # and the user agent's side: its private key opens the published message
    opened = http_ece.decrypt(unb64u(RFC["body"]), private_key=_private(RFC["ua_private"]),
                              auth_secret=unb64u(RFC["auth"]), version="aes128gcm")
    assert opened == RFC["plaintext"]


# ---- a push service on loopback ---------------------------------------------------------------------
@dataclass
class Received:
    path: str
    headers: Any  # case-insensitive
    body: bytes


@dataclass
class PushServer:
    origin: str = ""
    statuses: list[int] = field(default_factory=list)  # answers in order; then 201
    received: list[Received] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    want: int = 1

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(Received(request.path, request.headers.copy(), await request.read()))
        if len(self.received) >= self.want:
            self.arrived.set()
        status = self.statuses.pop(0) if self.statuses else 201
        return web.Response(status=status)

    async def wait(self, n: int) -> list[Received]:
        self.want = n
        if len(self.received) < n:
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), 15)
        return self.received


@pytest.fixture
async def push_server() -> Any:
    server = PushServer()
    app = web.Application()
    app.router.add_post("/push/{token}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.origin = f"http://127.0.0.1:{port}"
    yield server
    await runner.cleanup()


@dataclass
class Subscriber:
    private: ec.EllipticCurvePrivateKey
    auth: bytes

    @classmethod
    def new(cls) -> "Subscriber":
        return cls(ec.generate_private_key(ec.SECP256R1()), os.urandom(16))

    @property
    def p256dh(self) -> str:
        return b64u(self.private.public_key().public_bytes(serialization.Encoding.X962,
                                                           serialization.PublicFormat.UncompressedPoint))

    def decrypt(self, body: bytes) -> bytes:
        return http_ece.decrypt(body, private_key=self.private, auth_secret=self.auth, version="aes128gcm")


def verify_vapid(headers: Any, published_key: str, origin: str) -> dict[str, Any]:
    scheme, _, params = headers["Authorization"].partition(" ")
    assert scheme == "vapid"
    parts = dict(p.strip().split("=", 1) for p in params.split(","))
    assert parts["k"] == published_key  # the key the server publishes at /v1/push/vapid
    raw = unb64u(parts["k"])
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    assert jwt.get_unverified_header(parts["t"])["alg"] == "ES256"
    claims = jwt.decode(parts["t"], public, algorithms=["ES256"], audience=origin,
                        options={"require": ["exp", "aud", "sub"]})
    now = time.time()
    assert now < claims["exp"] <= now + 24 * 3600
    assert claims["sub"].startswith(("mailto:", "https:"))
    return claims


async def _channel(api: Api) -> tuple[dict, dict, int]:
    owner = await api.register()
    reader = await api.register()
    r = await api.client.post("/v1/chats", json={"kind": "channel", "title": "news",
                                                 "members": [reader["user"]["username"]]}, headers=bearer(owner))
    assert r.status_code == 201, r.text
    return owner, reader, r.json()["id"]


async def _subscribe(api: Api, who: dict, server: PushServer, sub: Subscriber, **extra: Any) -> dict:
    r = await api.client.post("/v1/push/subscriptions", json={
        "endpoint": f"{server.origin}/push/{os.urandom(6).hex()}", "p256dh": sub.p256dh, "auth": b64u(sub.auth),
        **extra}, headers=bearer(who))
    assert r.status_code == 201, r.text
    return r.json()


async def test_offline_member_gets_an_encrypted_push_without_plaintext(api: Api, push_server: PushServer) -> None:
    vapid = (await api.client.get("/v1/push/vapid")).json()
    assert len(unb64u(vapid["public_key"])) == 65
    owner, reader, chat_id = await _channel(api)
    sub = Subscriber.new()
    created = await _subscribe(api, reader, push_server, sub, include_sender=True)
    listed = (await api.client.get("/v1/push/subscriptions", headers=bearer(reader))).json()["subscriptions"]
    assert [s["id"] for s in listed] == [created["id"]] and listed[0]["current_device"] is True

    secret = f"launch codes {os.urandom(4).hex()}"
    r = await api.client.post(f"/v1/chats/{chat_id}/messages", json={"txn_id": "p1", "text": secret},
                              headers=bearer(owner))
    assert r.status_code == 201, r.text

    [got] = await push_server.wait(1)
    verify_vapid(got.headers, vapid["public_key"], push_server.origin)
    assert got.headers["Content-Encoding"] == "aes128gcm"
    assert int(got.headers["TTL"]) > 0
    assert secret.encode() not in got.body
    payload = json.loads(sub.decrypt(got.body))
    assert payload == {"type": "message", "chat_id": chat_id, "seq": r.json()["seq"], "unread": 1,
                       "sender": owner["user"]["username"]}
    assert secret not in json.dumps(payload)


async def test_sender_name_only_when_opted_in_and_unread_counts(api: Api, push_server: PushServer) -> None:
    owner, reader, chat_id = await _channel(api)
    sub = Subscriber.new()
    await _subscribe(api, reader, push_server, sub)
    for i in range(2):
        r = await api.client.post(f"/v1/chats/{chat_id}/messages", json={"txn_id": f"q{i}", "text": "hi"},
                                  headers=bearer(owner))
        assert r.status_code == 201
    got = await push_server.wait(2)
    payloads = sorted((json.loads(sub.decrypt(g.body)) for g in got), key=lambda p: p["seq"])
    assert [p["unread"] for p in payloads] == [1, 2] or [p["unread"] for p in payloads] == [2, 2]
    assert all("sender" not in p for p in payloads)


async def test_410_removes_the_subscription(api: Api, push_server: PushServer) -> None:
    owner, reader, chat_id = await _channel(api)
    created = await _subscribe(api, reader, push_server, Subscriber.new())
    push_server.statuses = [410]
    r = await api.client.post(f"/v1/chats/{chat_id}/messages", json={"txn_id": "g1", "text": "x"},
                              headers=bearer(owner))
    assert r.status_code == 201
    await push_server.wait(1)
    await _settled(api)
    async with api.state.sessions() as db:
        assert await db.get(PushSubscription, created["id"]) is None
    assert (await api.client.get("/v1/push/subscriptions", headers=bearer(reader))).json()["subscriptions"] == []


async def test_5xx_and_429_are_retried_then_delivered(api: Api, push_server: PushServer) -> None:
    api.state.settings.push_backoff_s = 0.01
    owner, reader, chat_id = await _channel(api)
    sub = Subscriber.new()
    created = await _subscribe(api, reader, push_server, sub)
    push_server.statuses = [503, 429]
    r = await api.client.post(f"/v1/chats/{chat_id}/messages", json={"txn_id": "r1", "text": "x"},
                              headers=bearer(owner))
    assert r.status_code == 201
    got = await push_server.wait(3)
    assert len({json.loads(sub.decrypt(g.body))["seq"] for g in got}) == 1  # the same push, three tries
    await _settled(api)
    async with api.state.sessions() as db:
        row = await db.get(PushSubscription, created["id"])
        assert row is not None and row.last_success_at is not None


async def test_bounded_attempts_keep_the_subscription(sqlite_api: Api, push_server: PushServer) -> None:
    api = sqlite_api
    api.state.settings.push_backoff_s = 0.01
    owner, reader, chat_id = await _channel(api)
    created = await _subscribe(api, reader, push_server, Subscriber.new())
    push_server.statuses = [500] * 10
    await api.client.post(f"/v1/chats/{chat_id}/messages", json={"txn_id": "b1", "text": "x"}, headers=bearer(owner))
    await push_server.wait(api.state.settings.push_max_attempts)
    await _settled(api)
    assert len(push_server.received) == api.state.settings.push_max_attempts
    async with api.state.sessions() as db:
        assert await db.get(PushSubscription, created["id"]) is not None


async def test_connected_member_gets_no_push(api: Api, push_server: PushServer) -> None:
    owner, reader, chat_id = await _channel(api)
    await _subscribe(api, reader, push_server, Subscriber.new())
    await api.state.presence.connect(reader["user"]["id"], "conn-test")
    r = await api.client.post(f"/v1/chats/{chat_id}/messages", json={"txn_id": "c1", "text": "x"},
                              headers=bearer(owner))
    message = r.json()
    from server.push.service import PushJob

    targets = await api.state.push.targets(PushJob(chat_id, message["seq"], owner["user"]["id"], "x"))
    assert targets == []
    await _settled(api)
    assert push_server.received == []


async def test_subscription_validation_and_ownership(sqlite_api: Api, push_server: PushServer) -> None:
    api = sqlite_api
    alice, bob = await api.register(), await api.register()
    sub = Subscriber.new()
    bad = [
        {"endpoint": "ftp://push.example/x", "p256dh": sub.p256dh, "auth": b64u(sub.auth)},
        {"endpoint": "http://push.example.com/x", "p256dh": sub.p256dh, "auth": b64u(sub.auth)},
        {"endpoint": "https://push.example.com/x", "p256dh": "A" * 87, "auth": b64u(sub.auth)},
        {"endpoint": "https://push.example.com/x", "p256dh": sub.p256dh, "auth": b64u(b"short" * 4)},
    ]
    for body in bad:
        r = await api.client.post("/v1/push/subscriptions", json=body, headers=bearer(alice))
        assert r.status_code in (400, 422), (body, r.text)
    created = await _subscribe(api, alice, push_server, sub)
    assert (await api.client.delete(f"/v1/push/subscriptions/{created['id']}", headers=bearer(bob))).status_code == 404
    assert (await api.client.delete(f"/v1/push/subscriptions/{created['id']}",
                                    headers=bearer(alice))).status_code == 204
    async with api.state.sessions() as db:
        assert (await db.scalars(select(PushSubscription).where(PushSubscription.id == created["id"]))).all() == []


async def _settled(api: Api) -> None:
    await api.state.push.settle()
