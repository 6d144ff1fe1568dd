"""Delivery guarantees of the WebSocket stream: resume, ordering, exactly-once, idempotent sends, close codes."""

import asyncio
import json
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from sqlalchemy import update

from server.db.models import Chat, User
from tests.conftest import make_settings
from tests.kit.livekit import Client, Live, start_live
from tests.kit.wskit import Socket, closed_code, connect, frames_until_closed, recv_frame, send_auth

MESSAGE = "message.created"


@pytest.fixture(autouse=True)
def _sqlite_migrated_first(sqlite_url: str) -> None:
    """``live_backends`` migrates SQLite with asyncio.run inside the running loop when it is the first to
    ask for it; a sync fixture that runs first makes the database (tests/kit/livekit.py is not ours)."""


def envelope(text: str) -> dict[str, str]:
    """An opaque E2E envelope (the server never reads it)."""
    return {"algorithm": "m.megolm.v1.aes-sha2", "sender_key": "k" * 43, "session_id": "s" * 43, "ciphertext": text}


async def group(owner: Client, members: Iterable[Client], title: str = "g") -> dict[str, Any]:
    return await owner.call("POST", "/v1/chats", 201,  # type: ignore[no-any-return]
                            json={"kind": "group", "title": title, "members": [m.username for m in members]})


async def rest_send(client: Client, chat_id: int, txn: str | None = None, text: str = "x") -> dict[str, Any]:
    return await client.call("POST", f"/v1/chats/{chat_id}/messages", 201,  # type: ignore[no-any-return]
                             json={"txn_id": txn or uuid.uuid4().hex, "e2e": envelope(text)})


async def backlog(sock: Socket, timeout: float = 60.0) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Frames up to ``caught_up`` (excluded), and the ``caught_up`` frame."""
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while True:
            f = await sock.next(timeout)
            if f["type"] == "caught_up":
                return frames, f
            frames.append(f)


async def ws_commands(sock: Socket, cmds: list[dict[str, Any]], timeout: float = 60.0) -> dict[str, dict[str, Any]]:
    """Pipeline commands on one socket while reading; returns the answer (ack or error) per request id."""
    ids = []
    for c in cmds:
        c.setdefault("id", uuid.uuid4().hex[:12])
        ids.append(c["id"])
    answers: dict[str, dict[str, Any]] = {}

    async def writer() -> None:
        for c in cmds:
            await sock.ws.send(json.dumps(c))

    task = asyncio.create_task(writer())
    try:
        async with asyncio.timeout(timeout):
            while len(answers) < len(set(ids)):
                f = await sock.next(timeout)
                if f["type"] in ("ack", "error") and f.get("id") in ids:
                    answers[f["id"]] = f
        await task
    finally:
        task.cancel()
    return answers


async def close_draining(sock: Socket) -> None:
    """Close a socket that has unread frames: the websockets client reads nothing (not even the close
    answer) while its receive queue is full, so something has to consume the frames until the close."""

    async def drain() -> None:
        try:
            while True:
                await sock.ws.recv()
        except websockets.ConnectionClosed:
            return

    task = asyncio.create_task(drain())
    await sock.close()
    await task


async def ping(sock: Socket, timeout: float = 10.0) -> dict[str, Any]:
    """``ping`` → ``pong`` (Socket.command waits for ack/error only)."""
    req = uuid.uuid4().hex[:12]
    await sock.ws.send(json.dumps({"op": "ping", "id": req}))
    return await sock.until(lambda f: f.get("id") == req, timeout)


def check_stream(frames: list[dict[str, Any]], start: dict[int, int]) -> dict[int, list[dict[str, Any]]]:
    """Per chat: seqs follow each other from the cursor on, no gap and no duplicate."""
    per_chat: dict[int, list[dict[str, Any]]] = {}
    for f in frames:
        if "seq" in f:
            per_chat.setdefault(f["chat_id"], []).append(f)
    for chat_id, fs in per_chat.items():
        seqs = [f["seq"] for f in fs]
        first = start.get(chat_id, seqs[0] - 1) + 1
        assert seqs == list(range(first, first + len(seqs))), f"chat {chat_id}: {seqs[:20]}…"
    return per_chat


# ---- 1. the offline client gets exactly what it missed ----------------------------------------------------------

async def test_offline_client_resumes_exactly_the_missed_events(live_backends: Live) -> None:
    live = live_backends
    # 1,000 messages on SQLite and PostgreSQL. MariaDB gets 600 to keep the suite's time in budget: its
    # durable commits make each send about 1.5x slower on this shared 2-core box. Chat 0 gets half of them,
    # so on the other two backends its replay crosses the 500-event page of the replay reads (paging is
    # backend-independent code).
    total = 600 if live.backend == "mysql" else 1000  # type: ignore[attr-defined]
    alice, bob, carol, dave = [await live.user(n) for n in ("alice", "bob", "carol", "dave")]
    chats = [await group(alice, [bob, carol], f"g{i}") for i in range(4)]
    chat_ids = [c["id"] for c in chats]

    sock = await bob.socket(cursor={})
    _, caught = await backlog(sock)
    cursor = caught["cursor"]
    assert set(cursor) == {str(c) for c in chat_ids}
    await sock.close()

    # Carol sends over two WebSocket sessions (the command rate limit is per session), Alice over REST.
    login = await httpx.AsyncClient(base_url=live.server.url).post(
        "/v1/auth/login", json={"username": carol.username, "password": "correct horse battery"})
    carol_socks = [await carol.socket(cursor=None), await carol.socket(cursor=None, token=login.json()["access_token"])]
    for s in carol_socks:
        await backlog(s)
    ws_share = 100  # per carol session, under the default 120 commands / 10 s
    plan: list[tuple[str, int, int]] = []  # (how, chat index, n)
    for n in range(total):
        how = "ws0" if n % 10 == 3 else "ws1" if n % 10 == 7 else "rest"
        plan.append((how, (0, 1, 0, 2, 0, 3)[n % 6], n))
    assert sum(1 for p in plan if p[0] == "ws0") <= ws_share
    sent: dict[int, tuple[int, int]] = {}  # message id → (chat id, seq)

    async def rest_part() -> None:
        todo = [p for p in plan if p[0] == "rest"]
        for i in range(0, len(todo), 8):
            outs = await asyncio.gather(*(rest_send(alice, chat_ids[c], text=f"m{n}") for _, c, n in todo[i:i + 8]))
            for o in outs:
                sent[o["id"]] = (o["chat_id"], o["seq"])

    async def ws_part(k: int) -> None:
        cmds = [{"op": "send", "chat_id": chat_ids[c], "txn_id": f"w{n}", "e2e": envelope(f"m{n}")}
                for how, c, n in plan if how == f"ws{k}"]
        answers = await ws_commands(carol_socks[k], cmds)
        for a in answers.values():
            assert a["type"] == "ack", a
            sent[a["result"]["id"]] = (a["result"]["chat_id"], a["result"]["seq"])

    await asyncio.gather(rest_part(), ws_part(0), ws_part(1))
    assert len(sent) == total

    # Then the rest of the stream: edits, deletes, reactions, receipts, membership and role changes.
    c0 = chat_ids[0]
    history = await alice.call("GET", f"/v1/chats/{c0}/messages", 200, params={"limit": 5})
    mine = [m for m in history["messages"] if m["sender"] == alice.username]
    target = mine[-1]["id"]
    await alice.call("PATCH", f"/v1/chats/{c0}/messages/{target}", 200, json={"e2e": envelope("edited")})
    await carol.call("PUT", f"/v1/chats/{c0}/messages/{target}/reactions/👍", 204)
    await carol.call("DELETE", f"/v1/chats/{c0}/messages/{target}/reactions/👍", 204)
    await carol.call("POST", f"/v1/chats/{c0}/read", 204, json={"seq": sent[target][1]})
    await alice.call("POST", f"/v1/chats/{c0}/members", 201, json={"username": dave.username})
    await alice.call("PUT", f"/v1/chats/{c0}/members/{dave.username}/role", 200, json={"role": "admin"})
    await alice.call("DELETE", f"/v1/chats/{c0}/members/{dave.username}", 204)
    await alice.call("DELETE", f"/v1/chats/{c0}/messages/{target}", 204)
    tail_types = ["message.edited", "reaction.added", "reaction.removed", "receipt", "member.joined",
                  "member.role_changed", "member.removed", "message.deleted"]
    for s in carol_socks:
        await close_draining(s)

    started = time.monotonic()
    sock = await bob.socket(cursor=cursor)
    frames, caught = await backlog(sock, timeout=120)
    replay_s = time.monotonic() - started
    per_chat = check_stream(frames, {int(k): v for k, v in cursor.items()})
    created = [f for f in frames if f["type"] == MESSAGE]
    assert len(created) == total
    assert {f["data"]["id"] for f in created} == set(sent), "every message exactly once"
    for f in created:
        assert (f["chat_id"], f["seq"]) == sent[f["data"]["id"]]
        assert f["data"]["seq"] == f["seq"]
    assert [f["type"] for f in per_chat[c0] if f["type"] != MESSAGE] == tail_types
    assert [f["type"] for f in per_chat[c0]][-len(tail_types):] == tail_types, "the tail comes after the messages"
    edited = next(f for f in per_chat[c0] if f["type"] == "message.edited")
    # message events are filled from the message row at replay: the edit shows the message as it is now
    assert edited["data"]["id"] == target
    for cid in chat_ids:
        assert caught["cursor"][str(cid)] == per_chat[cid][-1]["seq"]
    # and nothing more arrives: a fresh live message is the very next chat event (presence may come first)
    live_msg = await rest_send(alice, chat_ids[1], text="live")
    nxt = await sock.until(lambda f: "seq" in f)
    assert (nxt["type"], nxt["data"]["id"]) == (MESSAGE, live_msg["id"])
    await sock.close()
    print(f"[{live.backend}] replayed {len(frames)} events in {replay_s:.2f} s")  # type: ignore[attr-defined]


# ---- 2. idempotent sends ----------------------------------------------------------------------------------------

async def test_repeated_sends_create_one_message(live_backends: Live) -> None:
    live = live_backends
    alice, bob = await live.user("alice"), await live.user("bob")
    chat = (await group(alice, [bob]))["id"]
    bob_sock = await bob.socket(cursor=None)
    await backlog(bob_sock)
    a_sock = await alice.socket(cursor=None)
    await backlog(a_sock)
    rounds = 6
    results: dict[str, set[int]] = {}
    for r in range(rounds):
        txn = f"t{r}-{uuid.uuid4().hex[:6]}"
        body = {"txn_id": txn, "e2e": envelope(f"r{r}")}
        cmd = {"op": "send", "chat_id": chat, "txn_id": txn, "e2e": envelope(f"r{r}")}
        ids: set[int] = set()
        if r % 2 == 0:  # sequential: REST three times, then the WebSocket three times
            for _ in range(3):
                ids.add((await alice.call("POST", f"/v1/chats/{chat}/messages", 201, json=body))["id"])
            answers = await ws_commands(a_sock, [dict(cmd) for _ in range(3)])
            ids |= {a["result"]["id"] for a in answers.values()}
        else:  # all six at once
            outs = await asyncio.gather(
                *(alice.call("POST", f"/v1/chats/{chat}/messages", 201, json=body) for _ in range(3)),
                ws_commands(a_sock, [dict(cmd) for _ in range(3)]),
            )
            ids |= {o["id"] for o in outs[:3]}
            ids |= {a["result"]["id"] for a in outs[3].values()}  # type: ignore[union-attr]
        results[txn] = ids
    assert all(len(v) == 1 for v in results.values()), results
    expected = {next(iter(v)) for v in results.values()}
    sentinel = await rest_send(alice, chat, text="sentinel")
    got: list[int] = []
    while True:
        f = await bob_sock.until(lambda f: f["type"] == MESSAGE)
        if f["data"]["id"] == sentinel["id"]:
            break
        got.append(f["data"]["id"])
    assert sorted(got) == sorted(expected), "the receiver saw each message once"
    page = await bob.call("GET", f"/v1/chats/{chat}/messages", 200, params={"limit": 200})
    assert len(page["messages"]) == rounds + 1
    await bob_sock.close()
    await a_sock.close()


async def test_refused_send_is_not_remembered(live: Live) -> None:
    alice, bob, carol = await live.user("alice"), await live.user("bob"), await live.user("carol")
    chat = (await group(alice, [bob]))["id"]
    # not a member yet: refused, then allowed once carol joins
    r = await carol.call("POST", f"/v1/chats/{chat}/messages", 404, json={"txn_id": "n1", "e2e": envelope("a")})
    assert r["error"]["code"] == "chat_not_found"
    c_sock = await carol.socket(cursor=None)
    await backlog(c_sock)
    ws_no = await c_sock.command("send", chat_id=chat, txn_id="n2", e2e=envelope("b"))
    assert ws_no["type"] == "error" and ws_no["error"]["code"] == "chat_not_found"
    await alice.call("POST", f"/v1/chats/{chat}/members", 201, json={"username": carol.username})
    ok1 = await carol.call("POST", f"/v1/chats/{chat}/messages", 201, json={"txn_id": "n1", "e2e": envelope("a")})
    ok2 = await c_sock.command("send", chat_id=chat, txn_id="n2", e2e=envelope("b"))
    assert ok2["type"] == "ack" and ok2["result"]["id"] != ok1["id"]

    # slow mode: the refused attempt leaves nothing behind
    await alice.call("PATCH", f"/v1/chats/{chat}", 200, json={"slow_mode_seconds": 3600})
    first = await bob.call("POST", f"/v1/chats/{chat}/messages", 201, json={"txn_id": "s1", "e2e": envelope("1")})
    late = await bob.call("POST", f"/v1/chats/{chat}/messages", 429, json={"txn_id": "s2", "e2e": envelope("2")})
    assert late["error"]["code"] == "slow_mode"
    b_sock = await bob.socket(cursor=None)
    await backlog(b_sock)
    ws_late = await b_sock.command("send", chat_id=chat, txn_id="s3", e2e=envelope("3"))
    assert ws_late["type"] == "error" and ws_late["error"]["code"] == "slow_mode"
    # a retry of the successful one still answers with the first message, even under slow mode
    again = await bob.call("POST", f"/v1/chats/{chat}/messages", 201, json={"txn_id": "s1", "e2e": envelope("1")})
    assert again["id"] == first["id"]
    await alice.call("PATCH", f"/v1/chats/{chat}", 200, json={"slow_mode_seconds": 0})
    s2 = await bob.call("POST", f"/v1/chats/{chat}/messages", 201, json={"txn_id": "s2", "e2e": envelope("2")})
    s3 = await b_sock.command("send", chat_id=chat, txn_id="s3", e2e=envelope("3"))
    assert s3["type"] == "ack"
    assert len({first["id"], s2["id"], s3["result"]["id"]}) == 3
    page = await alice.call("GET", f"/v1/chats/{chat}/messages", 200)
    assert [m["id"] for m in page["messages"]] == [ok1["id"], ok2["result"]["id"], first["id"], s2["id"],
                                                   s3["result"]["id"]]
    await c_sock.close()
    await b_sock.close()


# ---- 3. resume edge cases ---------------------------------------------------------------------------------------

async def test_null_cursor_means_live_only(live: Live) -> None:
    alice, bob = await live.user("alice"), await live.user("bob")
    chat = (await group(alice, [bob]))["id"]
    for _ in range(3):
        last = await rest_send(alice, chat)
    sock = await bob.socket(cursor=None)
    first = await sock.next()
    assert first["type"] == "caught_up", "no backlog for a null cursor"
    assert first["cursor"][str(chat)] == last["seq"]
    m = await rest_send(alice, chat, text="live")
    f = await sock.next()
    assert (f["type"], f["data"]["id"], f["seq"]) == (MESSAGE, m["id"], last["seq"] + 1)
    await sock.close()


async def test_chat_joined_while_offline_replays_from_the_join(live: Live) -> None:
    alice, bob = await live.user("alice"), await live.user("bob")
    old = (await group(alice, [bob], "old"))["id"]
    sock = await bob.socket(cursor={})
    _, caught = await backlog(sock)
    await sock.close()
    new = (await group(alice, [], "new"))["id"]
    before = [await rest_send(alice, new, text="before") for _ in range(2)]
    await alice.call("POST", f"/v1/chats/{new}/members", 201, json={"username": bob.username})
    after = [await rest_send(alice, new, text="after") for _ in range(2)]
    made = (await group(alice, [bob], "made"))["id"]  # created with bob in it: from chat.created
    m = await rest_send(alice, made)

    sock = await bob.socket(cursor=caught["cursor"])
    frames, caught2 = await backlog(sock)
    per_chat = check_stream(frames, {old: caught["cursor"][str(old)]})
    assert old not in per_chat
    assert [f["type"] for f in per_chat[new]] == ["member.joined", MESSAGE, MESSAGE]
    assert [f["data"]["id"] for f in per_chat[new][1:]] == [a["id"] for a in after]
    assert per_chat[new][0]["seq"] == before[-1]["seq"] + 1
    assert [f["type"] for f in per_chat[made]] == ["chat.created", MESSAGE]
    assert per_chat[made][1]["data"]["id"] == m["id"]
    assert caught2["cursor"][str(new)] == after[-1]["seq"]
    await sock.close()


async def test_member_removed_while_offline_gets_events_up_to_its_removal(live: Live) -> None:
    alice, bob = await live.user("alice"), await live.user("bob")
    chat = (await group(alice, [bob], "kick"))["id"]
    other = (await group(alice, [bob], "other"))["id"]
    sock = await bob.socket(cursor={})
    _, caught = await backlog(sock)
    await sock.close()
    m1 = await rest_send(alice, chat, text="seen")
    await alice.call("DELETE", f"/v1/chats/{chat}/members/{bob.username}", 204)
    hidden = await rest_send(alice, chat, text="not for bob")
    sock = await bob.socket(cursor=caught["cursor"])
    frames, caught2 = await backlog(sock)
    per_chat = check_stream(frames, {int(k): v for k, v in caught["cursor"].items()})
    assert [f["type"] for f in per_chat[chat]] == [MESSAGE, "member.removed"]
    assert per_chat[chat][0]["data"]["id"] == m1["id"]
    assert per_chat[chat][1]["data"]["user"]["username"] == bob.username
    assert all(f.get("data", {}).get("id") != hidden["id"] for f in frames)
    # live: nothing more from that chat; the next frame is the other chat's message
    await rest_send(alice, chat, text="still not for bob")
    o = await rest_send(alice, other)
    f = await sock.next()
    assert (f["chat_id"], f["data"]["id"]) == (other, o["id"])
    await sock.close()
    # and resuming again from the new cursor gives nothing about the old chat
    sock = await bob.socket(cursor=caught2["cursor"] | {str(other): o["seq"]})
    frames, _ = await backlog(sock)
    assert frames == []
    await sock.close()


async def test_cursor_older_than_retention_asks_for_resync(live: Live) -> None:
    alice, bob = await live.user("alice"), await live.user("bob")
    purged = (await group(alice, [bob], "purged"))["id"]
    kept = (await group(alice, [bob], "kept"))["id"]
    sock = await bob.socket(cursor={})
    _, caught = await backlog(sock)
    await sock.close()
    for _ in range(5):
        last = await rest_send(alice, purged)
    k = await rest_send(alice, kept)
    async with live.server.state.sessions() as db:
        await db.execute(update(Chat).where(Chat.id == purged).values(purged_seq=last["seq"] - 2))
        await db.commit()
    sock = await bob.socket(cursor=caught["cursor"])
    frames, caught2 = await backlog(sock)
    assert frames[-1] == {"type": "resync_required", "chat_ids": [purged]}
    assert [f["data"]["id"] for f in frames[:-1]] == [k["id"]]
    assert caught2["cursor"][str(purged)] == last["seq"]
    # live traffic of the purged chat continues from there
    m = await rest_send(alice, purged)
    f = await sock.next()
    assert (f["chat_id"], f["seq"], f["data"]["id"]) == (purged, last["seq"] + 1, m["id"])
    await sock.close()


async def test_reconnecting_during_live_traffic_loses_and_repeats_nothing(live_backends: Live) -> None:
    live = live_backends
    alice, bob = await live.user("alice"), await live.user("bob")
    chats = [(await group(alice, [bob], f"g{i}"))["id"] for i in range(2)]
    total, reconnects = 240, 5
    sent: list[dict[str, Any]] = []
    done = asyncio.Event()

    async def writer() -> None:
        for n in range(total):
            sent.append(await rest_send(alice, chats[n % 2], text=f"m{n}"))
        done.set()

    seen: list[dict[str, Any]] = []
    sock = await bob.socket(cursor={})
    await backlog(sock)
    cursor = dict(sock.cursor)
    task = asyncio.create_task(writer())
    try:
        for _ in range(reconnects):
            # read a slice of the live stream, drop the socket mid-traffic, resume from what was seen
            want = len(seen) + total // (reconnects + 2)
            while len(seen) < want:
                f = await sock.next(timeout=30)
                if f["type"] == MESSAGE:
                    seen.append(f)
            cursor = dict(sock.cursor)
            await sock.close()
            sock = await bob.socket(cursor=cursor)
            sock.cursor = dict(cursor)
        await task
        while len(seen) < total:
            f = await sock.next(timeout=30)
            if f["type"] == MESSAGE:
                seen.append(f)
    finally:
        task.cancel()
    assert done.is_set()
    assert [f["data"]["id"] for f in seen if f["chat_id"] == chats[0]] == [
        m["id"] for m in sent if m["chat_id"] == chats[0]]
    assert [f["data"]["id"] for f in seen if f["chat_id"] == chats[1]] == [
        m["id"] for m in sent if m["chat_id"] == chats[1]]
    # nothing extra is pending: the next frame is a fresh message
    extra = await rest_send(alice, chats[0])
    f = await sock.until(lambda f: f["type"] == MESSAGE)
    assert f["data"]["id"] == extra["id"]
    await sock.close()


# ---- 4. live fan-out and close codes ----------------------------------------------------------------------------

async def test_group_fan_out_reaches_every_member(live: Live) -> None:
    alice = await live.user("alice")
    others = [await live.user("m") for _ in range(49)]
    chat = (await group(alice, others, "big"))["id"]
    socks = await asyncio.gather(*(c.socket(cursor=None) for c in [alice, *others]))
    for s in socks:
        await backlog(s)
    m = await rest_send(alice, chat, text="to all")
    frames = await asyncio.gather(*(s.until(lambda f: f["type"] == MESSAGE) for s in socks))
    assert [f["data"]["id"] for f in frames] == [m["id"]] * 50
    await asyncio.gather(*(s.close() for s in socks))


async def _revoked_within(sock: Socket, deadline_s: float = 1.0) -> tuple[dict[str, Any], int | None]:
    """The session.revoked frame and the close code, both within the deadline."""
    async with asyncio.timeout(deadline_s):
        frame = await sock.until(lambda f: f["type"] == "session.revoked", timeout=deadline_s)
        await sock.ws.wait_closed()
    return frame, sock.ws.close_code


async def _login(live: Live, username: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=live.server.url) as http:
        r = await http.post("/v1/auth/login", json={"username": username, "password": "correct horse battery"})
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize("how", ["delete_session", "logout", "ban", "revoke_all"])
async def test_revoked_session_socket_closes_within_a_second(live: Live, how: str) -> None:
    alice, bob = await live.user("alice"), await live.user("bob")
    await group(alice, [bob])
    sock = await bob.socket(cursor={})
    await backlog(sock)
    other = await _login(live, bob.username)  # bob's second session, left alone unless banned
    other_sock = await bob.socket(cursor=None, token=other["access_token"])
    await backlog(other_sock)
    t0 = time.monotonic()
    if how == "delete_session":
        await bob.call("DELETE", f"/v1/sessions/{bob.tokens['session_id']}", 204,
                       headers={"Authorization": f"Bearer {other['access_token']}"})
    elif how == "logout":
        await bob.call("POST", "/v1/auth/logout", 204)
    elif how == "revoke_all":
        await bob.call("POST", "/v1/sessions/revoke-all", 200)
    else:
        async with live.server.state.sessions() as db:
            await db.execute(update(User).where(User.id == alice.user_id).values(is_admin=True))
            await db.commit()
        await alice.call("POST", f"/v1/admin/users/{bob.username}/ban", 200, json={"reason": "spam"})
    frame, code = await _revoked_within(sock)
    assert code == 4003 and frame["reason"]
    assert time.monotonic() - t0 < 1.5  # the REST call itself included
    if how in ("ban", "revoke_all"):
        _, code2 = await _revoked_within(other_sock)
        assert code2 == 4003
    else:  # only that session: the other one still works
        assert (await ping(other_sock))["type"] == "pong"
    await other_sock.close()
    # the revoked token cannot open a new socket
    ws = await connect(live.server.ws_url)
    await send_auth(ws, bob.tokens["access_token"])
    err = await recv_frame(ws, 5)
    assert err["type"] == "error"
    with pytest.raises(websockets.ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 5)
    assert ws.close_code in (4001, 4003)


@pytest.fixture
async def quick(sqlite_url: str, tmp_path: Path) -> Any:
    server = await start_live(make_settings(tmp_path, sqlite_url, ws_idle_timeout_s=0.5, ws_auth_timeout_s=0.5))
    lv = Live(server)
    try:
        yield lv
    finally:
        await lv.close()
        await server.stop()


async def test_idle_socket_is_closed_with_4002(quick: Live) -> None:
    bob = await quick.user("bob")
    sock = await bob.socket(cursor=None)
    t0 = time.monotonic()
    assert await closed_code(sock.ws) == 4002
    assert time.monotonic() - t0 >= 0.4
    # a client that pings every heartbeat stays connected past several idle timeouts
    sock = await bob.socket(cursor=None)
    await backlog(sock)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.6:
        assert (await ping(sock, timeout=2))["type"] == "pong"
        await asyncio.sleep(0.2)  # the client's heartbeat period, not synchronisation
    await sock.close()


@pytest.mark.parametrize("first", ["nothing", "late", "bad_token", "not_auth", "garbage", "binary"])
async def test_bad_or_missing_auth_closes_with_4001(quick: Live, first: str) -> None:
    bob = await quick.user("bob")
    ws = await connect(quick.server.ws_url)
    if first == "bad_token":
        await send_auth(ws, bob.tokens["access_token"][:-4] + "AAAA")
    elif first == "not_auth":
        await ws.send(json.dumps({"op": "ping", "id": "1"}))
    elif first == "garbage":
        await ws.send("{not json")
    elif first == "binary":
        await ws.send(b"\xff\xfe\x00")
    t0 = time.monotonic()
    frames, code = await frames_until_closed(ws, 5)
    assert code == 4001
    assert frames and frames[0]["type"] == "error"
    if first in ("nothing", "late"):
        assert time.monotonic() - t0 >= 0.4
    if first == "late":  # the auth frame that comes after the deadline is not read
        with pytest.raises(websockets.ConnectionClosed):
            await send_auth(ws, bob.tokens["access_token"])
    # the server goes on
    sock = await bob.socket(cursor=None)
    assert (await ping(sock))["type"] == "pong"
    await sock.close()


async def _refused_auth(live: Live, token: str) -> tuple[dict[str, Any], int | None]:
    ws = await connect(live.server.ws_url)
    await send_auth(ws, token)
    err = await recv_frame(ws, 5)
    return err, await closed_code(ws)


async def test_auth_frame_token_must_name_a_live_session(quick: Live) -> None:
    """A token the server signed for a session that does not exist, or that ended where this worker's
    revocation store never heard of it (another process, no Redis), opens no socket."""
    import jwt

    from server.db.models import DeviceSession
    from server.db.types import utcnow

    bob = await quick.user("bob")
    keys = quick.server.state.keys
    claims = jwt.decode(bob.tokens["access_token"], options={"verify_signature": False})
    made_up = jwt.encode({**claims, "sid": uuid.uuid4().hex}, keys._keys[keys.active_kid].private,
                         algorithm="RS256", headers={"kid": keys.active_kid})
    err, code = await _refused_auth(quick, made_up)
    assert (err["type"], err["error"]["code"], code) == ("error", "invalid_token", 4001)

    async with httpx.AsyncClient(base_url=quick.server.url) as http:
        r = await http.post("/v1/auth/login", json={"username": bob.username, "password": "correct horse battery"})
    ended = r.json()
    async with quick.server.state.sessions() as db:
        await db.execute(update(DeviceSession).where(DeviceSession.id == ended["session_id"])
                         .values(revoked_at=utcnow(), revoke_reason="logout"))
        await db.commit()
    err, code = await _refused_auth(quick, ended["access_token"])
    assert (err["type"], err["error"]["code"], code) == ("error", "session_revoked", 4003)
    # the control: bob's live session opens a socket
    sock = await bob.socket(cursor=None)
    assert (await ping(sock))["type"] == "pong"
    await sock.close()


async def test_server_shutdown_closes_sockets_with_1012(sqlite_url: str, tmp_path: Path) -> None:
    server = await start_live(make_settings(tmp_path, sqlite_url))
    lv = Live(server)
    try:
        alice, bob = await lv.user("alice"), await lv.user("bob")
        await group(alice, [bob])
        socks = [await bob.socket(cursor={}), await alice.socket(cursor=None)]
        for s in socks:
            await backlog(s)
        stopping = asyncio.create_task(server.stop())
        for s in socks:
            assert await closed_code(s.ws, timeout=10) == 1012
        await stopping
    finally:
        await lv.close()
        if not server.server.should_exit:
            await server.stop()
