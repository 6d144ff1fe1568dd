"""Invalid client frames get an ``error`` frame or a documented close code; the socket and server go on."""

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from melo_protocol.wire.realtime import MAX_FRAME_BYTES
from server.realtime import connection
from tests.conftest import make_settings
from tests.kit.livekit import Live, start_live
from tests.kit.wskit import Socket, closed_code, connect
from tests.server.realtime.test_delivery import backlog, envelope, group, ping


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


def padded(frame: dict[str, Any], size: int) -> str:
    """The frame as JSON text of exactly ``size`` bytes (whitespace after it is still valid JSON)."""
    text = json.dumps(frame)
    return text + " " * (size - len(text.encode()))


async def test_frames_up_to_the_limit_are_read_bigger_ones_close_1009(live: Live) -> None:
    alice, bob = await live.user("alice"), await live.user("bob")
    chat = (await group(alice, [bob]))["id"]
    # an auth frame and a command of exactly MAX_FRAME_BYTES are processed
    ws = await connect(live.server.ws_url)
    sock = Socket(ws)
    await ws.send(padded({"op": "auth", "token": bob.tokens["access_token"], "cursor": None}, MAX_FRAME_BYTES))
    assert (await sock.next())["type"] == "ready"
    await backlog(sock)
    await ws.send(padded({"op": "ping", "id": "edge"}, MAX_FRAME_BYTES))
    assert await sock.until(lambda f: f.get("id") == "edge") == {"type": "pong", "id": "edge"}
    # one byte more closes the socket with 1009, from the transport; nothing of it is stored
    big = {"op": "send", "id": "big", "chat_id": chat, "txn_id": "t", "e2e": envelope("x" * 300_000)}
    await ws.send(padded(big, max(MAX_FRAME_BYTES + 1, len(json.dumps(big)))))
    assert await closed_code(ws) == 1009
    page = await alice.call("GET", f"/v1/chats/{chat}/messages", 200)
    assert page["messages"] == [], "nothing of the refused frame was stored"
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
    assert await closed_code(sock.ws) == 4009
    fresh = await bob.socket(cursor=None)
    assert (await ping(fresh))["type"] == "pong"
    await fresh.close()


async def test_command_flood_is_rate_limited_not_closed(limited: Live) -> None:
    """rate_limited refusals answer valid commands sent too fast; they are not invalid frames, and never
    close the socket however many there are."""
    live = limited
    alice, bob = await live.user("alice"), await live.user("bob")
    chat = (await group(alice, [bob]))["id"]
    sock = await bob.socket(cursor=None)
    await backlog(sock)
    n = 10 * (live.server.settings.ws_max_bad_frames + 1)
    for i in range(n):
        await sock.ws.send(json.dumps({"op": "ping", "id": f"p{i}"}))
    answers = [await sock.until(lambda f: f["type"] in ("pong", "error")) for _ in range(n)]
    pongs = [a for a in answers if a["type"] == "pong"]
    refused = [a for a in answers if a["type"] == "error"]
    assert len(pongs) == 20, "the first 20 commands pass"
    assert len(refused) == n - 20 and {e["error"]["code"] for e in refused} == {"rate_limited"}
    assert all("retry_after" in e["error"]["details"] for e in refused)
    # still open: a frame is still answered (an invalid one, which the rate limit does not hold back)
    assert (await error_for(sock, "not json"))["error"]["code"] == "malformed_json"
    # other sessions are not affected, and the server goes on
    a_sock = await alice.socket(cursor=None)
    assert (await a_sock.command("send", chat_id=chat, txn_id="ok", e2e=envelope("fine")))["type"] == "ack"
    await a_sock.close()
    await sock.close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_invalid_frames_count_within_a_window(live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    """More than ws_max_bad_frames invalid frames within ws_bad_frames_window_s close with 4009; as many
    spread over longer do not (the socket's clock is moved, not waited for)."""
    clock = FakeClock()
    monkeypatch.setattr(connection, "monotonic", clock)
    settings = live.server.settings
    limit, window = settings.ws_max_bad_frames, settings.ws_bad_frames_window_s
    bob = await live.user("bob")
    sock = await bob.socket(cursor=None)
    await backlog(sock)
    for _ in range(3):  # three windows' worth, each at the limit
        for i in range(limit):
            assert (await error_for(sock, f"garbage {i}"))["error"]["code"] == "malformed_json"
        clock.now += window
    assert (await ping(sock))["type"] == "pong", "invalid frames spread over more than the window: still open"
    for i in range(limit):
        await error_for(sock, f"again {i}")
    await sock.ws.send("one too many within the window")
    assert await closed_code(sock.ws) == 4009


@pytest.mark.parametrize(("times", "closes_at"), [
    ([0.0] * 4, 3),  # the 4th within the window
    ([0.0, 1.0, 2.0, 9.9], 3),
    ([0.0, 1.0, 2.0, 10.0], None),  # the first one has left the window
    ([0.0, 5.0, 10.0, 15.0, 20.0, 25.0], None),
    ([0.0, 5.0, 10.0, 15.0, 16.0, 17.0, 18.0], 5),  # 10, 15, 16 and 17 within 10 s
])
def test_invalid_frames_window(times: list[float], closes_at: int | None) -> None:
    counter = connection.InvalidFrames(limit=3, window_s=10.0)
    over = [i for i, t in enumerate(times) if counter.count(t)]
    assert (over[0] if over else None) == closes_at
