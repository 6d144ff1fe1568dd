"""A raw WebSocket on ``/v1/ws`` for server socket tests: connect, authenticate, read frames, see the close.

The one copy of what tests did by hand with ``websockets`` (the SDK's ``LiveStream`` is tested in
tests/protocol; these helpers speak the wire directly, so a test can send what no client would).
"""

import asyncio
import json
import uuid
from typing import Any

import websockets
from websockets.asyncio import client as ws_client
from websockets.asyncio.client import ClientConnection

# Larger than any frame the server sends (a backlog frame of a big message), so reading never fails here.
MAX_SIZE = 4 * 1024 * 1024


def connect(ws_url: str) -> ws_client.connect:
    """A bare socket: ``await connect(url)`` or ``async with connect(url) as ws``.

    No protocol-level keepalive, as in the SDK (clients send ``ping`` commands): the server reads a client's
    frames only as fast as it handles them, so a ping queued behind 100 pipelined sends on a loaded box could
    miss websockets' 20 s deadline and fail a test that is not about keepalive.
    """
    return ws_client.connect(ws_url, max_size=MAX_SIZE, ping_interval=None)


async def send_auth(ws: ClientConnection, token: str, cursor: dict[str, int] | None = None) -> None:
    """The first frame of every session."""
    await ws.send(json.dumps({"op": "auth", "token": token, "cursor": cursor}))


async def recv_frame(ws: ClientConnection, timeout: float = 10.0) -> dict[str, Any]:
    """The next frame, parsed."""
    async with asyncio.timeout(timeout):
        frame: dict[str, Any] = json.loads(await ws.recv())
    return frame


async def frames_until_closed(ws: ClientConnection, timeout: float = 5.0) -> tuple[list[dict[str, Any]], int | None]:
    """Every frame until the server closes the socket: (the frames, the close code)."""
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        try:
            while True:
                frames.append(json.loads(await ws.recv()))
        except websockets.ConnectionClosed:
            pass
    return frames, ws.close_code


async def closed_code(ws: ClientConnection, timeout: float = 5.0) -> int | None:
    """The close code, once the server has closed the socket (frames before it are skipped unread)."""
    async with asyncio.timeout(timeout):
        try:
            while True:
                await ws.recv()
        except websockets.ConnectionClosed:
            pass
    return ws.close_code


class Socket:
    """An authenticated socket that remembers the cursor of the chat events it read."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.cursor: dict[str, int] = {}

    async def next(self, timeout: float = 10.0) -> dict[str, Any]:
        frame = await recv_frame(self.ws, timeout)
        if "chat_id" in frame and "seq" in frame:
            self.cursor[str(frame["chat_id"])] = frame["seq"]
        return frame

    async def until(self, pred: Any, timeout: float = 10.0) -> dict[str, Any]:
        """Next frame matching pred (frames before it are consumed)."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.next(timeout)
                if pred(frame):
                    return frame

    async def command(self, op: str, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
        """Send a command; its ``ack`` or ``error``."""
        req = uuid.uuid4().hex[:12]
        await self.ws.send(json.dumps({"op": op, "id": req, **fields}))
        return await self.until(lambda f: f.get("id") == req and f["type"] in ("ack", "error"), timeout)

    async def close(self) -> None:
        await self.ws.close()


async def open_socket(ws_url: str, token: str, cursor: dict[str, int] | None = None) -> Socket:
    """Connected and authenticated: the ``ready`` frame has been read."""
    ws = await connect(ws_url)
    sock = Socket(ws)
    await send_auth(ws, token, cursor)
    ready = await sock.next()
    assert ready["type"] == "ready", ready
    return sock
