"""Backpressure: a client that stops reading is cut loose (4008 or a dropped transport) without slowing the
others, and the server holds a bounded amount for it."""

import asyncio
import base64
import json
import os
import socket
import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_settings
from tests.kit.livekit import Client, Live, start_live
from tests.server.realtime.test_delivery import backlog

QUEUE = 8


@pytest.fixture
async def small_queue(sqlite_url: str, tmp_path: Path) -> AsyncIterator[Live]:
    server = await start_live(make_settings(tmp_path, sqlite_url, ws_queue_size=QUEUE))
    lv = Live(server)
    try:
        yield lv
    finally:
        await lv.close()
        await server.stop()


def masked_text_frame(payload: bytes) -> bytes:
    head = bytes([0x81])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def stalled_socket(port: int, token: str) -> socket.socket:
    """A raw WebSocket that authenticates and then never reads; tiny receive buffer so it fills fast."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    await loop.sock_sendall(sock, (
        f"GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    async with asyncio.timeout(5):
        while b"\r\n\r\n" not in head:
            head += await loop.sock_recv(sock, 1)  # byte by byte: leave the frames after it unread
    assert head.startswith(b"HTTP/1.1 101"), head
    auth = json.dumps({"op": "auth", "token": token, "cursor": None}).encode()
    await loop.sock_sendall(sock, masked_text_frame(auth))
    return sock


async def read_until_gone(sock: socket.socket, timeout: float) -> tuple[bool, int | None]:
    """Read everything the server still sends; (transport ended, close code if a close frame came)."""
    loop = asyncio.get_running_loop()
    data = b""
    try:
        async with asyncio.timeout(timeout):
            while True:
                chunk = await loop.sock_recv(sock, 1 << 20)
                if not chunk:
                    break
                data += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False, None
    return True, last_close_code(data)


def last_close_code(data: bytes) -> int | None:
    i, code = 0, None
    while i + 2 <= len(data):
        op, n = data[i] & 0x0F, data[i + 1] & 0x7F
        i += 2
        if n == 126:
            n, i = struct.unpack("!H", data[i:i + 2])[0], i + 2
        elif n == 127:
            n, i = struct.unpack("!Q", data[i:i + 8])[0], i + 8
        if op == 0x8 and n >= 2:
            code = struct.unpack("!H", data[i:i + 2])[0]
        i += n
    return code


async def poll(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll a condition of the server or the kernel with a deadline (there is no event to wait on)."""
    async with asyncio.timeout(timeout):
        while True:
            if cond():
                return
            await asyncio.sleep(0.01)


def connection_of(live: Live, user: Client) -> Any:
    conns = live.server.state.hub.by_user.get(user.user_id, set())
    return next(iter(conns)) if conns else None


async def test_stalled_reader_is_cut_loose_without_slowing_others(small_queue: Live) -> None:
    live = small_queue
    hub = live.server.state.hub
    alice, bob, carol = await live.user("alice"), await live.user("bob"), await live.user("carol")
    chat = (await alice.call("POST", "/v1/chats", 201, json={
        "kind": "channel", "title": "firehose", "members": [bob.username, carol.username]}))["id"]
    bob_sock = await bob.socket(cursor=None)
    await backlog(bob_sock)
    raw = await stalled_socket(live.server.port, carol.tokens["access_token"])
    await poll(lambda: connection_of(live, carol) is not None)
    stalled = connection_of(live, carol)
    before = len(hub)
    assert before == 2

    big = "x" * 60_000
    max_queue = 0
    sent = 0
    for i in range(400):
        m = await alice.call("POST", f"/v1/chats/{chat}/messages", 201, json={"txn_id": f"t{i}", "text": big})
        sent += 1
        max_queue = max(max_queue, stalled.queue.qsize())
        # the others are not held up: bob has this message promptly, stalled peer or not
        f = await bob_sock.until(lambda f: f["type"] == "message.created", timeout=5)
        assert f["data"]["id"] == m["id"]
        if stalled.finished.is_set():
            break
    assert stalled.finished.is_set(), f"a peer that never reads was still connected after {sent} messages"
    assert stalled.close_code == 4008
    assert max_queue <= QUEUE
    assert len(hub) == before - 1 and connection_of(live, carol) is None
    # bob goes on receiving after the cut
    m = await alice.call("POST", f"/v1/chats/{chat}/messages", 201, json={"txn_id": "after", "text": "still here"})
    assert (await bob_sock.until(lambda f: f["type"] == "message.created"))["data"]["id"] == m["id"]
    # the server does not keep the stalled transport (and what it had buffered) around waiting for a reader
    # that never comes: it aborts the TCP connection, which the peer sees as a reset without reading anything
    await poll(lambda: raw.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0)
    gone, code = await read_until_gone(raw, timeout=10)
    raw.close()
    assert gone
    assert code in (None, 4008)
    await bob_sock.close()
