"""Invalid client frames get an ``error`` frame or a documented close code; the socket and server go on."""

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from tests.conftest import make_settings
from tests.realtime.conftest import Live, Socket, start_live
from tests.realtime.test_delivery import backlog, envelope, group, ping


@pytest.fixture
async def limited(sqlite_url: str, tmp_path: Path) -> AsyncIterator[Live]:
    server = await start_live(make_settings(tmp_path, sqlite_url, rate_ws_commands="20/10seconds"))
    lv = Live(server)
    try:
        yield lv
    finally:
        await lv.close()
        await server.stop()


async def error_for(sock: Socket, frame: str | bytes) -> dict[str, Any]:
    await sock.ws.send(frame)
    f = await sock.until(lambda f: f["type"] == "error")
    assert f["error"]["code"] and f["error"]["message"]
    return f


async def closed_with(ws: Any, timeout: float = 5.0) -> int | None:
    async with asyncio.timeout(timeout):
        try:
            while True:
                await ws.recv()
        except websockets.ConnectionClosed:
            pass
    return ws.close_code  # type: ignore[no-any-return]


@pytest.mark.parametrize(("frame", "code"), [
    ("{not json", "malformed_json"),
    ("", "malformed_json"),
    ("[" * 5000 + "]" * 5000, "malformed_json"),  # nesting deeper than the JSON parser recurses
    ('"just a string"', "validation_error"),
    ("[1, 2]", "validation_error"),
    ("null", "validation_error"),
    ('{"id": "x1"}', "validation_error"),
    ('{"op": "teleport", "id": "x2"}', "bad_request"),
    ('{"op": "send", "id": "x3", "chat_id": "abc", "txn_id": "t", "text": "hi"}', "validation_error"),
    ('{"op": "send", "id": "x4", "chat_id": 1, "txn_id": 7, "text": "hi"}', "validation_error"),
    ('{"op": "read", "id": "x5", "chat_id": 1, "seq": "many"}', "validation_error"),
    ('{"op": "typing", "id": "x6", "chat_id": [1], "typing": "yes"}', "validation_error"),
    ('{"op": "react", "id": "x7", "chat_id": 1, "message_id": 1, "emoji": ""}', "validation_error"),
    ('{"op": "auth", "id": "x8", "token": "again", "cursor": null}', "bad_request"),  # already authenticated
    (b"\xff\xfe\xfd", "bad_request"),
])
async def test_single_bad_frame_gets_an_error_and_the_socket_keeps_working(live: Live, frame: str | bytes,
                                                                         code: str) -> None:
    alice, bob = await live.user("alice"), await live.user("bob")
    chat = (await group(alice, [bob]))["id"]
    sock = await bob.socket(cursor=None)
    await backlog(sock)
    err = await error_for(sock, frame)
    assert err["error"]["code"] == code, err
    if isinstance(frame, str) and '"id": "x' in frame:
        assert err["id"] == json.loads(frame)["id"], "the request id is echoed"
    # the same socket still works, both ways
    assert (await ping(sock))["type"] == "pong"
    ok = await sock.command("send", chat_id=chat, txn_id="after", e2e=envelope("fine"))
    assert ok["type"] == "ack"
    m = await alice.call("POST", f"/v1/chats/{chat}/messages", 201, json={"txn_id": "a", "e2e": envelope("x")})
    assert (await sock.until(lambda f: f["type"] == "message.created" and f["data"]["id"] == m["id"]))
    await sock.close()


async def test_binary_utf8_json_is_read_as_text(live: Live) -> None:
    bob = await live.user("bob")
    sock = await bob.socket(cursor=None)
    await backlog(sock)
    await sock.ws.send(json.dumps({"op": "ping", "id": "b1"}).encode())
    assert await sock.until(lambda f: f.get("id") == "b1") == {"type": "pong", "id": "b1"}
    await sock.close()


async def test_oversize_frames(live: Live) -> None:
    alice, bob = await live.user("alice"), await live.user("bob")
    chat = (await group(alice, [bob]))["id"]
    sock = await bob.socket(cursor=None)
    await backlog(sock)
    # over the protocol's 256 KiB but within the transport's limit: an error, the socket stays
    big = json.dumps({"op": "send", "id": "big", "chat_id": chat, "txn_id": "t", "e2e": envelope("x" * 300_000)})
    err = await error_for(sock, big)
    assert err["error"]["code"] == "payload_too_large"
    assert (await ping(sock))["type"] == "pong"
    page = await alice.call("GET", f"/v1/chats/{chat}/messages", 200)
    assert page["messages"] == [], "nothing of the refused frame was stored"
    # over the transport's maximum (1 MiB here): the transport closes with 1009
    await sock.ws.send("x" * (1024 * 1024 + 1))
    assert await closed_with(sock.ws) == 1009
    # the server goes on
    fresh = await bob.socket(cursor=None)
    assert (await fresh.command("send", chat_id=chat, txn_id="later", e2e=envelope("ok")))["type"] == "ack"
    await fresh.close()


async def test_garbage_flood_closes_with_4009(live: Live) -> None:
    bob = await live.user("bob")
    sock = await bob.socket(cursor=None)
    await backlog(sock)
    limit = live.server.settings.ws_max_bad_frames
    for i in range(limit):
        await sock.ws.send(f"garbage {i}")
    errors = [await sock.until(lambda f: f["type"] == "error") for _ in range(limit)]
    assert {e["error"]["code"] for e in errors} == {"malformed_json"}
    assert (await ping(sock))["type"] == "pong", "still open at the limit"
    await sock.ws.send("one too many")
    assert await closed_with(sock.ws) == 4009
    fresh = await bob.socket(cursor=None)
    assert (await ping(fresh))["type"] == "pong"
    await fresh.close()


async def test_command_flood_is_rate_limited_then_closed(limited: Live) -> None:
    live = limited
    alice, bob = await live.user("alice"), await live.user("bob")
    chat = (await group(alice, [bob]))["id"]
    sock = await bob.socket(cursor=None)
    await backlog(sock)
    answers: list[dict[str, Any]] = []
    sent = 0
    code: int | None = None
    try:
        for i in range(200):
            await sock.ws.send(json.dumps({"op": "ping", "id": f"p{i}"}))
            sent += 1
        async with asyncio.timeout(10):
            while True:
                answers.append(await sock.next())
    except websockets.ConnectionClosed:
        code = sock.ws.close_code
    pongs = [a for a in answers if a["type"] == "pong"]
    limited_errors = [a for a in answers if a["type"] == "error"]
    assert len(pongs) == 20, "the first 20 commands pass"
    assert limited_errors and {e["error"]["code"] for e in limited_errors} == {"rate_limited"}
    assert all("retry_after" in e["error"]["details"] or e["error"]["details"] for e in limited_errors)
    assert code == 4009, "a client that keeps going past the limit is cut off"
    # other sessions are not affected, and the server goes on
    a_sock = await alice.socket(cursor=None)
    assert (await a_sock.command("send", chat_id=chat, txn_id="ok", e2e=envelope("fine")))["type"] == "ack"
    await a_sock.close()
