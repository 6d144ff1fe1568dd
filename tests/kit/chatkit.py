"""Helpers for the live chat and message tests: chats, sends, quiet checks, raw sockets, server state."""

import itertools
import json
import secrets
from datetime import UTC, datetime
from typing import Any

import websockets
from sqlalchemy import insert, update

from server.db.models import User
from tests.kit.livekit import Client, Live
from tests.kit.wskit import Socket, connect, frames_until_closed

_txn = itertools.count(1)


def envelope(n: int | str = 0) -> dict[str, Any]:
    """An opaque E2E envelope: the server stores and relays it, never reads it."""
    return {"algorithm": "m.megolm.v1.aes-sha2", "sender_key": "curve-key-" + str(n),
            "session_id": "megolm-session", "ciphertext": f"ciphertext-{n}-{secrets.token_hex(4)}",
            "device_id": "DEVICE1"}


def txn() -> str:
    return f"t{next(_txn)}-{secrets.token_hex(4)}"


def code(body: Any) -> str:
    """The error code of an error body (REST JSON or WS error frame)."""
    assert isinstance(body, dict) and "error" in body, body
    err = body["error"]
    assert set(err) >= {"code", "message", "details"}, body
    return str(err["code"])


async def new_chat(owner: Client, kind: str, *members: Client, title: str = "room", **extra: Any) -> dict[str, Any]:
    return await owner.call("POST", "/v1/chats", 201, json={
        "kind": kind, "title": title, "members": [m.username for m in members], **extra})


async def make_admin(owner: Client, chat_id: int, member: Client) -> None:
    out = await owner.call("PUT", f"/v1/chats/{chat_id}/members/{member.username}/role", 200,
                           json={"role": "admin"})
    assert out["role"] == "admin"


async def post(client: Client, chat: dict[str, Any] | int, text: str | None = None, *, expect: int = 201,
               reply_to: int | None = None, e2e: dict[str, Any] | None = None) -> Any:
    """Send a message over REST: text in channels, an envelope elsewhere (unless given)."""
    if isinstance(chat, dict):
        chat_id, is_e2e = chat["id"], chat["e2e"]
    else:
        chat_id, is_e2e = chat, e2e is not None
    body: dict[str, Any] = {"txn_id": txn()}
    if e2e is not None:
        body["e2e"] = e2e
    elif is_e2e and text is None:
        body["e2e"] = envelope()
    else:
        body["text"] = text if text is not None else "hello"
    if reply_to is not None:
        body["reply_to"] = reply_to
    return await client.call("POST", f"/v1/chats/{chat_id}/messages", expect, json=body)


async def quiet(sock: Socket) -> None:
    """Nothing is pending on the socket: the next frame after a ping is its pong."""
    req = secrets.token_hex(6)
    await sock.ws.send(json.dumps({"op": "ping", "id": req}))
    frame = await sock.next()
    assert frame == {"type": "pong", "id": req}, f"unexpected frame before the pong: {frame}"


async def ready_socket(client: Client, cursor: dict[str, int] | None = None) -> Socket:
    """A socket past ``caught_up`` whose presence announcement is done (it answered a ping)."""
    sock = await client.socket(cursor=cursor)
    await sock.until(lambda f: f["type"] == "caught_up")
    await quiet(sock)
    return sock


def is_event(type_: str, chat_id: int | None = None) -> Any:
    return lambda f: f["type"] == type_ and (chat_id is None or f.get("chat_id") == chat_id)


async def next_chat_event(sock: Socket) -> dict[str, Any]:
    """The next frame that is a chat event (presence and typing frames are skipped)."""
    return await sock.until(lambda f: "chat_id" in f and "seq" in f)


async def raw_session(live: Live, first_frames: list[dict[str, Any]],
                      wait_s: float = 10.0) -> tuple[list[dict[str, Any]], int | None]:
    """Open a bare socket, send frames, read until the server closes: (frames received, close code)."""
    async with connect(live.server.ws_url) as ws:
        for f in first_frames:
            try:
                await ws.send(json.dumps(f))
            except websockets.ConnectionClosed:
                break
        return await frames_until_closed(ws, wait_s)


async def insert_users(live: Live, n: int, prefix: str = "bulk") -> list[str]:
    """Many accounts at once, written straight to the database (registration hashes passwords slowly).
    They never sign in: they only fill chats."""
    tag = secrets.token_hex(3)
    names = [f"{prefix}{tag}_{i}" for i in range(n)]
    now = datetime.now(UTC)
    async with live.server.state.sessions() as db:
        await db.execute(insert(User), [
            {"username": name, "password_hash": "!", "is_admin": False, "created_at": now} for name in names])
        await db.commit()
    return names


async def set_site_admin(live: Live, client: Client) -> None:
    async with live.server.state.sessions() as db:
        await db.execute(update(User).where(User.id == client.user_id).values(is_admin=True))
        await db.commit()


def server_conns(live: Live, client: Client) -> set[Any]:
    """This user's live connections in the server's hub (the server runs in the test's event loop)."""
    return set(live.server.state.hub.by_user.get(client.user_id, ()))


async def members(client: Client, chat_id: int) -> dict[str, dict[str, Any]]:
    out = await client.call("GET", f"/v1/chats/{chat_id}/members", 200)
    return {m["user"]["username"]: m for m in out["members"]}


async def chat_entry(client: Client, chat_id: int) -> dict[str, Any]:
    chats = (await client.call("GET", "/v1/chats", 200))["chats"]
    found = [c for c in chats if c["id"] == chat_id]
    assert len(found) == 1, chats
    return found[0]
