"""Authorisation matrix: every chat and message route and every WebSocket command × every kind of actor.

The routes are enumerated from the served OpenAPI document, so a new route under /v1/chats or
/v1/invites fails this test until it has a row in the table below.
"""

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx

from tests.kit.chatkit import (
    envelope,
    insert_users,
    make_admin,
    new_chat,
    post,
    raw_session,
    set_site_admin,
    txn,
)
from tests.kit.livekit import Client, Live
from tests.kit.wskit import Socket, frames_until_closed

# Order matters for the few routes that change who holds a role: the owner acts last.
ACTORS = ("anonymous", "non_member", "banned", "revoked", "member", "admin", "owner")


def row(anonymous: Any, non_member: Any, member: Any, admin: Any, owner: Any, banned: Any,
        revoked: Any) -> dict[str, Any]:
    return {"anonymous": anonymous, "non_member": non_member, "member": member, "admin": admin, "owner": owner,
            "banned": banned, "revoked": revoked}


C = "/v1/chats/{chat_id}"
M = C + "/messages/{message_id}"
# (method, OpenAPI path) → expected status per actor. In the group chat under test: "member" is a plain
# member, "admin" a chat admin, "owner" its owner; "banned" and "revoked" are members whose account was
# banned / whose session was signed out. Targets: see ``Targets`` below.
REST_EXPECTED: dict[tuple[str, str], dict[str, int]] = {
    #                                            anon nonmem member admin owner banned revoked
    ("POST", "/v1/chats/direct"):             row(401, 201, 201, 201, 201, 401, 401),
    ("POST", "/v1/chats"):                    row(401, 201, 201, 201, 201, 401, 401),
    ("GET", "/v1/chats"):                     row(401, 200, 200, 200, 200, 401, 401),
    ("GET", C):                               row(401, 404, 200, 200, 200, 401, 401),
    ("PATCH", C):                             row(401, 404, 403, 200, 200, 401, 401),
    ("GET", C + "/members"):                  row(401, 404, 200, 200, 200, 401, 401),
    ("POST", C + "/members"):                 row(401, 404, 403, 201, 201, 401, 401),
    ("DELETE", C + "/members/{username}"):    row(401, 404, 403, 204, 204, 401, 401),  # a plain member
    ("PUT", C + "/members/{username}/role"):  row(401, 404, 403, 403, 200, 401, 401),
    ("POST", C + "/leave"):                   row(401, 404, 204, 204, 409, 401, 401),  # own chat: last owner
    ("POST", C + "/transfer"):                row(401, 404, 403, 403, 204, 401, 401),  # own chat
    ("POST", C + "/invites"):                 row(401, 404, 403, 201, 201, 401, 401),
    ("GET", C + "/invites"):                  row(401, 404, 403, 200, 200, 401, 401),
    ("DELETE", "/v1/invites/{code}"):         row(401, 404, 403, 200, 200, 401, 401),
    ("POST", "/v1/invites/{code}/join"):      row(401, 200, 200, 200, 200, 401, 401),  # another chat's code
    ("POST", C + "/messages"):                row(401, 404, 201, 201, 201, 401, 401),
    ("GET", C + "/messages"):                 row(401, 404, 200, 200, 200, 401, 401),
    ("PATCH", M):                             row(401, 404, 200, 403, 403, 401, 401),  # the member's message
    ("DELETE", M):                            row(401, 404, 403, 204, 204, 401, 401),  # a third user's message
    ("PUT", M + "/reactions/{emoji}"):        row(401, 404, 204, 204, 204, 401, 401),
    ("DELETE", M + "/reactions/{emoji}"):     row(401, 404, 204, 204, 204, 401, 401),
    ("GET", C + "/pins"):                     row(401, 404, 200, 200, 200, 401, 401),
    ("POST", C + "/pins"):                    row(401, 404, 403, 204, 204, 401, 401),
    ("DELETE", C + "/pins/{message_id}"):     row(401, 404, 403, 204, 204, 401, 401),
    ("POST", C + "/read"):                    row(401, 404, 204, 204, 204, 401, 401),
    ("POST", C + "/calls/missed"):            row(401, 404, 201, 201, 201, 401, 401),
    ("POST", C + "/scheduled"):               row(401, 404, 201, 201, 201, 401, 401),
    ("PUT", C + "/timer"):                    row(401, 404, 403, 200, 200, 401, 401),
}

# WebSocket commands: "ack", an error code, or "closed:<code>" when the socket cannot authenticate
# (anonymous: a command as the first frame; banned and revoked: their token in the auth frame).
WS_EXPECTED: dict[str, dict[str, str]] = {
    "send":     row("closed:4001", "chat_not_found", "ack", "ack", "ack", "closed:4003", "closed:4003"),
    "edit":     row("closed:4001", "chat_not_found", "ack", "not_author", "not_author", "closed:4003",
                    "closed:4003"),
    "delete":   row("closed:4001", "chat_not_found", "not_author", "ack", "ack", "closed:4003", "closed:4003"),
    "react":    row("closed:4001", "chat_not_found", "ack", "ack", "ack", "closed:4003", "closed:4003"),
    "typing":   row("closed:4001", "chat_not_found", "ack", "ack", "ack", "closed:4003", "closed:4003"),
    "read":     row("closed:4001", "chat_not_found", "ack", "ack", "ack", "closed:4003", "closed:4003"),
    "received": row("closed:4001", "chat_not_found", "ack", "ack", "ack", "closed:4003", "closed:4003"),
}
UNAUTHENTICATED_CODES = {"unauthenticated", "session_revoked", "account_banned"}


class Targets:
    """What each actor's request points at: shared where harmless, per actor where a success changes it."""

    def __init__(self) -> None:
        self.group = 0  # the chat under test
        self.leave_chat = 0  # a chat of its own for leave, and one for transfer
        self.transfer_chat = 0
        self.join_code = ""  # an invite to yet another chat
        self.transfer_to = ""
        self.role_target = ""
        self.victims: dict[str, str] = {}  # actor → a plain member to remove
        self.newcomers: dict[str, str] = {}  # actor → a user to add
        self.dm_peers: dict[str, str] = {}  # actor → a user to open a DM with
        self.invites: dict[str, str] = {}  # actor → a code to revoke
        self.member_message = 0  # written by "member": the edit target
        self.pin_message = 0
        self.react_message = 0
        self.doomed: dict[tuple[str, str], int] = {}  # (rest|ws, actor) → a third user's message to delete


def rest_request(key: tuple[str, str], actor: str, t: Targets) -> tuple[str, str, Any]:
    method, path = key
    chat = t.leave_chat if path.endswith("/leave") else t.transfer_chat if path.endswith("/transfer") else t.group
    message = t.doomed[("rest", actor)] if key == ("DELETE", M) else (
        t.pin_message if "/pins" in path else t.react_message if "/reactions/" in path else t.member_message)
    url = path.format(chat_id=chat, message_id=message, emoji=quote("👍"),
                      username=t.victims[actor] if "/role" not in path else t.role_target,
                      code=t.join_code if path.endswith("/join") else t.invites[actor])
    bodies: dict[tuple[str, str], Any] = {
        ("POST", "/v1/chats/direct"): {"username": t.dm_peers[actor]},
        ("POST", "/v1/chats"): {"kind": "group", "title": f"by {actor}"},
        ("PATCH", C): {"title": f"renamed by {actor}"},
        ("POST", C + "/members"): {"username": t.newcomers[actor]},
        ("PUT", C + "/members/{username}/role"): {"role": "admin"},
        ("POST", C + "/transfer"): {"username": t.transfer_to},
        ("POST", C + "/invites"): {"max_uses": 5},
        ("POST", C + "/messages"): {"txn_id": txn(), "e2e": envelope(actor)},
        ("PATCH", M): {"e2e": envelope(f"edited by {actor}")},
        ("POST", C + "/pins"): {"message_id": t.pin_message},
        ("POST", C + "/read"): {"seq": 1},
        ("POST", C + "/calls/missed"): {"call_id": f"call-{actor}"},
        ("POST", C + "/scheduled"): {"txn_id": txn(), "e2e": envelope(f"later by {actor}"),
                                     "send_at": (datetime.now(UTC) + timedelta(days=1)).isoformat()},
        ("PUT", C + "/timer"): {"seconds": None},
    }
    return method, url, bodies.get(key)


def ws_command(op: str, actor: str, t: Targets) -> dict[str, Any]:
    g = t.group
    commands: dict[str, dict[str, Any]] = {
        "send": {"chat_id": g, "txn_id": txn(), "e2e": envelope(actor)},
        "edit": {"chat_id": g, "message_id": t.member_message, "e2e": envelope("ws edit")},
        "delete": {"chat_id": g, "message_id": t.doomed[("ws", actor)]},
        "react": {"chat_id": g, "message_id": t.react_message, "emoji": "🎉"},
        "typing": {"chat_id": g, "typing": True},
        "read": {"chat_id": g, "seq": 1},
        "received": {"chat_id": g, "seq": 1},
    }
    return {"op": op, "id": f"{op}-{actor}", **commands[op]}


async def closed_with_revocation(sock: Socket) -> int | None:
    """Read a socket until the server closes it; the last frame must be ``session.revoked``."""
    frames, code = await frames_until_closed(sock.ws, 10)
    assert frames and frames[-1]["type"] == "session.revoked", frames
    return code


async def test_authorisation_matrix(live: Live) -> None:
    users: dict[str, Client] = {a: await live.user(a[:3]) for a in ACTORS if a != "anonymous"}
    author, site_admin = await live.user("author"), await live.user("siteadm")
    await set_site_admin(live, site_admin)
    member, admin, owner = users["member"], users["admin"], users["owner"]
    in_chat = [users[a] for a in ("member", "admin", "banned", "revoked")]

    t = Targets()
    extra = await insert_users(live, 3 * len(ACTORS) + 1, prefix="mx")
    for i, actor in enumerate(ACTORS):
        t.victims[actor], t.newcomers[actor], t.dm_peers[actor] = extra[3 * i:3 * i + 3]
    t.role_target = extra[-1]
    group = await owner.call("POST", "/v1/chats", 201, json={
        "kind": "group", "title": "matrix",
        "members": [u.username for u in (*in_chat, author)] + list(t.victims.values()) + [t.role_target]})
    t.group = group["id"]
    await make_admin(owner, t.group, admin)
    for field, title in (("leave_chat", "leave"), ("transfer_chat", "transfer")):
        chat = await new_chat(owner, "group", *in_chat, title=title)
        await make_admin(owner, chat["id"], admin)
        setattr(t, field, chat["id"])
    t.transfer_to = member.username
    elsewhere = await new_chat(owner, "group", title="elsewhere")
    t.join_code = (await owner.call("POST", f"/v1/chats/{elsewhere['id']}/invites", 201, json={}))["code"]
    for actor in ACTORS:
        t.invites[actor] = (await owner.call("POST", f"/v1/chats/{t.group}/invites", 201, json={}))["code"]
        for via in ("rest", "ws"):
            t.doomed[(via, actor)] = (await post(author, group))["id"]
    t.member_message = (await post(member, group))["id"]
    t.pin_message = t.react_message = (await post(author, group))["id"]

    # sockets: members and the non-member authenticate; banned and revoked ones are closed at once
    sockets = {a: await users[a].socket() for a in ("non_member", "member", "admin", "owner")}
    doomed_sockets = {a: await users[a].socket() for a in ("banned", "revoked")}
    await site_admin.call("POST", f"/v1/admin/users/{users['banned'].username}/ban", 200, json={"reason": "x"})
    await users["revoked"].call("POST", "/v1/auth/logout", 204)
    for actor, sock in doomed_sockets.items():
        assert await closed_with_revocation(sock) == 4003, actor

    # every chat and message route the server serves is in the table, and nothing else is
    spec = live.server.app.openapi()
    served = {(method.upper(), path) for path, ops in spec["paths"].items()
              if path.startswith(("/v1/chats", "/v1/invites")) for method in ops}
    assert served == set(REST_EXPECTED), (
        f"routes without a row: {sorted(served - set(REST_EXPECTED))}; "
        f"rows without a route: {sorted(set(REST_EXPECTED) - served)}")

    mismatches: list[str] = []
    anon = httpx.AsyncClient(base_url=live.server.url)
    try:
        for key, expected in REST_EXPECTED.items():
            for actor in ACTORS:
                method, url, body = rest_request(key, actor, t)
                http = anon if actor == "anonymous" else users[actor].http
                r = await http.request(method, url, json=body)
                got = r.status_code
                err = r.json().get("error", {}) if got >= 400 else {}
                problem = ""
                if got != expected[actor]:
                    problem = f"status {got}, expected {expected[actor]}"
                elif got >= 400 and not {"code", "message", "details"} <= set(err):
                    problem = "error body is not the error shape"
                elif got == 401 and err["code"] not in UNAUTHENTICATED_CODES:
                    problem = f"401 with code {err['code']}"
                elif got == 404 and "{chat_id}" in key[1] and err["code"] != "chat_not_found":
                    problem = f"404 with code {err['code']}, expected chat_not_found"
                if problem:
                    mismatches.append(f"{method} {key[1]} as {actor} ({url}): {problem}: {r.text[:200]}")
    finally:
        await anon.aclose()

    for op, expected in WS_EXPECTED.items():
        for actor in ACTORS:
            cmd = ws_command(op, actor, t)
            if actor in sockets:
                answer = await sockets[actor].command(cmd.pop("op"), **{k: v for k, v in cmd.items() if k != "id"})
                got_ws = "ack" if answer["type"] == "ack" else answer["error"]["code"]
            else:
                frames = [cmd] if actor == "anonymous" else [
                    {"op": "auth", "token": users[actor].tokens["access_token"], "cursor": None}, cmd]
                received, close_code = await raw_session(live, frames)
                acks = [f for f in received if f["type"] in ("ack", "ready")]
                errors = [f for f in received if f["type"] == "error"]
                got_ws = f"closed:{close_code}" if errors and not acks else f"open: {received}"
            if got_ws != expected[actor]:
                mismatches.append(f"ws {op} as {actor}: {got_ws}, expected {expected[actor]}")
            if actor in sockets:  # the socket stays open after an error
                await sockets[actor].ws.send(json.dumps({"op": "ping", "id": "alive"}))
                await sockets[actor].until(lambda f: f == {"type": "pong", "id": "alive"})

    for s in sockets.values():
        await s.close()
    assert not mismatches, f"{len(mismatches)} mismatches:\n" + "\n".join(mismatches)


def test_tables_name_every_actor() -> None:
    for table in (REST_EXPECTED, WS_EXPECTED):
        for key, cells in table.items():
            assert tuple(cells) == tuple(row(*range(7))), key
