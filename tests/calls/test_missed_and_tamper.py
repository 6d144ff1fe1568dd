"""Unanswered calls (timeout, callee offline) become call.missed chat events; tampered signalling never
connects; strangers cannot be called; ICE servers carry coturn REST credentials."""

import asyncio
import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from melo_protocol.client import CredentialStore, NotFound
from melo_protocol.client.call_state import CallState
from melo_protocol.client.errors import CallError
from melo_protocol.client.messenger import Messenger
from server.db.models import ToDeviceMessage
from tests.conftest import make_settings
from tests.kit.callkit import Party, chat_events, pair
from tests.kit.e2ekit import device
from tests.kit.livekit import Live, start_live
from tests.kit.wskit import connect, recv_frame, send_auth

FAST = {"ring_timeout": 2.0, "offline_timeout": 1.0}


async def test_timeout_records_a_missed_call(live: Live, tmp_path: Path) -> None:
    alice, bob, chat_id = await pair(live, tmp_path, **FAST)
    try:
        call = await alice.calls.start(bob.username)
        async with asyncio.timeout(10):
            incoming = await bob.calls.incoming.get()
        assert await call.wait_for(CallState.CONNECTED, timeout=10) is CallState.ENDED
        assert call.rang and call.reason == "no_answer" and call.chat_id == chat_id
        assert await incoming.wait_for(CallState.ENDED, timeout=5) is CallState.ENDED
        assert incoming.reason == "missed"
        frame = await chat_events(live, bob.m, chat_id, "call.missed")
        assert frame["data"]["call_id"] == call.call_id and frame["data"]["caller"] == alice.username
        assert set(frame["data"]) == {"call_id", "caller", "at"}  # metadata only
    finally:
        await alice.close()
        await bob.close()


async def _offline_bob(live: Live, home: Path) -> tuple[Party, Messenger, int]:
    tag = home.name[-6:].replace("_", "")
    a = await device(live, home, f"alice{tag}", "a1", register=True)
    b = await device(live, home, f"bob{tag}", "b1", register=True)
    chat = await a.client.create_direct(b.username)
    await b.close()  # keys uploaded, device known; no socket
    return Party(a, **FAST), b, chat.id


async def test_callee_offline_records_a_missed_call(live: Live, tmp_path: Path) -> None:
    alice, bob, chat_id = await _offline_bob(live, tmp_path)
    alice.calls.offline_timeout = alice.calls.ring_timeout = 600  # no timer decides: presence does, at once
    try:
        call = await alice.calls.start(bob.username)
        assert (call.state, call.reason, call.rang) == (CallState.ENDED, "offline", False)
        frame = await chat_events(live, alice.m, chat_id, "call.missed")
        assert frame["data"]["call_id"] == call.call_id and frame["data"]["caller"] == alice.username
        async with live.server.state.sessions() as db:  # no invite waits for bob's device either
            assert (await db.scalars(select(ToDeviceMessage).where(
                ToDeviceMessage.recipient_device == bob.device_id))).all() == []
    finally:
        await alice.close()
        await bob.client.aclose()


async def test_calling_a_user_who_does_not_exist_says_so(live: Live, tmp_path: Path) -> None:
    tag = tmp_path.name[-6:].replace("_", "")
    alice = Party(await device(live, tmp_path, f"alice{tag}", "a1", register=True))
    try:
        with pytest.raises(NotFound) as missing:
            await alice.calls.start(f"nobody{tag}")
        assert (missing.value.code, missing.value.message) == ("user_not_found", f"no such user: nobody{tag}")
        assert alice.calls.calls == {}
    finally:
        await alice.close()


def _flip_longest_string(value: Any) -> Any:
    """The content with one character of its longest string (the Olm ciphertext) changed."""
    strings: list[tuple[int, list[Any], Any]] = []

    def walk(node: Any, path: list[Any]) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, [*path, k])
        elif isinstance(node, str):
            strings.append((len(node), path, node))

    walk(value, [])
    _, path, text = max(strings, key=lambda s: s[0])
    i = len(text) // 2
    flipped = text[:i] + ("A" if text[i] != "A" else "B") + text[i + 1:]
    target = value
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = flipped
    return value


async def test_tampered_invite_fails_to_decrypt_and_never_connects(live: Live, tmp_path: Path) -> None:
    alice, bob_m, _ = await _offline_bob(live, tmp_path)
    bob: Party | None = None
    # bob's device holds a socket (so he is online and the invite is sent) but never reads it: the invite
    # stays queued, unacknowledged, for when his client runs
    silent = await connect(live.server.ws_url)
    try:
        await send_auth(silent, await bob_m.client.access_token())
        assert (await recv_frame(silent, 10))["type"] == "ready"
        call = await alice.calls.start(bob_m.username)
        async with live.server.state.sessions() as db:  # the relay alters the queued invite
            row = (await db.scalars(select(ToDeviceMessage).where(
                ToDeviceMessage.recipient_device == bob_m.device_id).order_by(ToDeviceMessage.id))).first()
            assert row is not None
            row.content = json.dumps(_flip_longest_string(json.loads(row.content)))
            await db.commit()
        assert await call.wait_for(CallState.CONNECTED, timeout=10) is CallState.ENDED
        assert call.reason == "offline" and call.connected_at is None and not call.rang
        await silent.close()
        # bob comes online: the altered invite does not decrypt; alice's hang-up after it does
        bob = Party(Messenger.open(bob_m.client, CredentialStore(tmp_path, "b1")))
        await bob.m.start()
        bob.task.cancel()
        bob.task = asyncio.create_task(bob._pump())
        hangup = await bob.signal(lambda s: s.action == "hangup" and s.call_id == call.call_id)
        assert hangup.user == alice.username
        assert [s.action for s in bob.signals] == ["hangup"]  # no invite came out of the tampered message
        assert bob.calls.calls == {} and bob.calls.incoming.empty()
    finally:
        await silent.close()
        await alice.close()
        if bob is not None:
            await bob.close()
        else:
            await bob_m.client.aclose()


async def test_a_stranger_cannot_be_called(live: Live, tmp_path: Path) -> None:
    tag = tmp_path.name[-6:].replace("_", "")
    a = await device(live, tmp_path, f"alice{tag}", "a1", register=True)
    c = await device(live, tmp_path, f"carol{tag}", "c1", register=True)
    alice = Party(a)
    try:
        with pytest.raises(CallError, match="cannot call"):
            await alice.calls.start(c.username)
        (call,) = alice.calls.calls.values()
        assert (call.state, call.reason) == (CallState.ENDED, "unreachable")
        assert alice.calls.active is None
    finally:
        await alice.close()
        await c.close()
        await c.client.aclose()


async def test_ice_servers_with_time_limited_turn_credentials(sqlite_url: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, sqlite_url, ice_stun_urls=["stun:stun.example.org:3478"],
                             ice_turn_urls=["turn:turn.example.org:3478?transport=udp"], turn_secret="s3cret",
                             turn_ttl_seconds=600)
    server = await start_live(settings)
    lv = Live(server)
    try:
        user = await lv.user("ice")
        before = int(time.time())
        body = await user.call("GET", "/v1/calls/ice-servers", expect=200)
        stun, turn = body["ice_servers"]
        assert stun == {"urls": ["stun:stun.example.org:3478"], "username": None, "credential": None}
        assert turn["urls"] == ["turn:turn.example.org:3478?transport=udp"]
        expiry, uid = turn["username"].split(":")
        assert int(uid) == user.user_id and before + 600 <= int(expiry) <= int(time.time()) + 600
        expected = base64.b64encode(hmac.new(b"s3cret", turn["username"].encode(), hashlib.sha1).digest()).decode()
        assert turn["credential"] == expected and body["ttl_seconds"] == 600
        async with httpx.AsyncClient(base_url=server.url) as anon:
            assert (await anon.get("/v1/calls/ice-servers")).status_code == 401
        # the SDK's typed call, which the call manager turns into aiortc's RTCIceServer list
        from melo_protocol.client import CredentialStore, MeloClient

        async with MeloClient(server.url, store=CredentialStore(tmp_path / "sdk", "ice")) as client:
            await client.register(f"icesdk{user.user_id}", "correct horse battery")
            typed = await client.ice_servers()
        assert [s.urls for s in typed.ice_servers] == [stun["urls"], turn["urls"]] and typed.ttl_seconds == 600
        assert typed.ice_servers[1].username is not None and typed.ice_servers[1].credential is not None
    finally:
        await lv.close()
        await server.stop()
