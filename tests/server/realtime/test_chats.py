"""Chats over a live server: direct, group and channel chats, settings, roles, membership events, invites."""

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from server.db.models import Invite
from tests.kit.chatkit import (
    chat_entry,
    code,
    insert_users,
    is_event,
    make_admin,
    members,
    new_chat,
    next_chat_event,
    post,
    quiet,
    ready_socket,
)
from tests.kit.livekit import Live


async def test_direct_chat_is_one_per_pair(live: Live) -> None:
    alice, bob, carol = await live.user("alice"), await live.user("bob"), await live.user("carol")
    bob_sock = await ready_socket(bob)

    first = await alice.call("POST", "/v1/chats/direct", 201, json={"username": bob.username})
    assert first["kind"] == "direct" and first["e2e"] is True and first["member_count"] == 2
    assert first["peer"]["username"] == bob.username and first["role"] == "member"
    created = await bob_sock.until(is_event("chat.created", first["id"]))
    assert created["data"]["kind"] == "direct"
    assert sorted(created["data"]["members"]) == sorted([alice.username, bob.username])

    again = await alice.call("POST", "/v1/chats/direct", 200, json={"username": bob.username})
    other_side = await bob.call("POST", "/v1/chats/direct", 200, json={"username": alice.username.upper()})
    assert again["id"] == other_side["id"] == first["id"]
    assert other_side["peer"]["username"] == alice.username
    # a new pair is a new chat; nothing more was created for the first pair
    third = await carol.call("POST", "/v1/chats/direct", 201, json={"username": "@" + alice.username})
    assert third["id"] != first["id"]
    await quiet(bob_sock)
    ids = [c["id"] for c in (await alice.call("GET", "/v1/chats", 200))["chats"] if c["kind"] == "direct"]
    assert sorted(ids) == sorted([first["id"], third["id"]])

    assert code(await alice.call("POST", "/v1/chats/direct", 400, json={"username": alice.username})) \
        == "cannot_dm_self"
    assert code(await alice.call("POST", "/v1/chats/direct", 404, json={"username": "nobody_here_x"})) \
        == "user_not_found"
    await bob_sock.close()


async def test_group_creator_owns_and_members_are_listed(live: Live) -> None:
    alice, bob, carol = await live.user("alice"), await live.user("bob"), await live.user("carol")
    bob_sock = await ready_socket(bob)
    chat = await new_chat(alice, "group", bob, carol, title="  team  ", description="our room")
    assert chat["kind"] == "group" and chat["e2e"] is True and chat["role"] == "owner"
    assert chat["title"] == "team" and chat["description"] == "our room" and chat["member_count"] == 3

    created = await bob_sock.until(is_event("chat.created", chat["id"]))
    assert created["seq"] == 1
    assert created["data"]["id"] == chat["id"] and created["data"]["title"] == "team"
    assert sorted(created["data"]["members"]) == sorted([alice.username, bob.username, carol.username])

    roles = {name: m["role"] for name, m in (await members(bob, chat["id"])).items()}
    assert roles == {alice.username: "owner", bob.username: "member", carol.username: "member"}
    assert (await chat_entry(bob, chat["id"]))["role"] == "member"
    # the creator listed among the members, or twice, is still one member
    dup = await alice.call("POST", "/v1/chats", 201, json={
        "kind": "channel", "title": "news", "members": [alice.username, bob.username, bob.username.upper()]})
    assert dup["member_count"] == 2 and dup["e2e"] is False
    bad = await alice.call("POST", "/v1/chats", 404, json={"kind": "group", "title": "x", "members": ["ghost_1x"]})
    assert code(bad) == "user_not_found"
    await bob_sock.close()


async def test_group_holds_at_most_1000_members(live: Live) -> None:
    alice, bob, late = await live.user("alice"), await live.user("bob"), await live.user("late")
    names = await insert_users(live, 998)
    too_many = await insert_users(live, 1000, prefix="many")
    over = await alice.call("POST", "/v1/chats", 422, json={"kind": "group", "title": "x", "members": too_many})
    assert code(over) == "validation_error"

    chat = await alice.call("POST", "/v1/chats", 201,
                            json={"kind": "group", "title": "big", "members": [*names, bob.username]})
    assert chat["member_count"] == 1000
    listed = await members(alice, chat["id"])
    assert len(listed) == 1000 and listed[alice.username]["role"] == "owner"

    full = await alice.call("POST", f"/v1/chats/{chat['id']}/members", 409, json={"username": late.username})
    assert code(full) == "group_full"
    invite = await alice.call("POST", f"/v1/chats/{chat['id']}/invites", 201, json={"max_uses": 1})
    assert code(await late.call("POST", f"/v1/invites/{invite['code']}/join", 409)) == "group_full"
    # the refused join spent no use: once there is room, the single-use code still works
    await alice.call("DELETE", f"/v1/chats/{chat['id']}/members/{bob.username}", 204)
    joined = await late.call("POST", f"/v1/invites/{invite['code']}/join", 200)
    assert joined["member_count"] == 1000 and joined["role"] == "member"
    full = await alice.call("POST", f"/v1/chats/{chat['id']}/members", 409, json={"username": bob.username})
    assert code(full) == "group_full"


async def test_channel_owner_and_admins_post_members_read(live: Live) -> None:
    owner, admin, member = await live.user("own"), await live.user("adm"), await live.user("mem")
    chat = await new_chat(owner, "channel", admin, member, title="news")
    assert chat["e2e"] is False
    await make_admin(owner, chat["id"], admin)
    sock = await ready_socket(member)

    from_owner = await post(owner, chat, "from the owner")
    from_admin = await post(admin, chat, "from an admin")
    denied = await post(member, chat, "from a member", expect=403)
    assert code(denied) == "channel_read_only"
    envelope_denied = await member.call("POST", f"/v1/chats/{chat['id']}/messages", 403,
                                        json={"txn_id": "x1", "e2e": {"algorithm": "a", "sender_key": "k",
                                                                      "session_id": "s", "ciphertext": "c"}})
    assert code(envelope_denied) == "channel_read_only"
    got = [await sock.until(is_event("message.created", chat["id"])) for _ in range(2)]
    assert [f["data"]["id"] for f in got] == [from_owner["id"], from_admin["id"]]
    assert [f["data"]["text"] for f in got] == ["from the owner", "from an admin"]
    ws_denied = await sock.command("send", chat_id=chat["id"], txn_id="ws1", text="member via ws")
    assert ws_denied["type"] == "error" and code(ws_denied) == "channel_read_only"
    await quiet(sock)
    history = await member.call("GET", f"/v1/chats/{chat['id']}/messages", 200)
    assert [m["text"] for m in history["messages"]] == ["from the owner", "from an admin"]
    # a demoted admin reads only
    await owner.call("PUT", f"/v1/chats/{chat['id']}/members/{admin.username}/role", 200, json={"role": "member"})
    assert code(await post(admin, chat, "again", expect=403)) == "channel_read_only"
    await sock.close()


async def test_title_description_and_slow_mode_by_admins_only(live: Live) -> None:
    owner, admin, member = await live.user("own"), await live.user("adm"), await live.user("mem")
    chat = await new_chat(owner, "group", admin, member, title="before")
    await make_admin(owner, chat["id"], admin)
    sock = await ready_socket(member)
    path = f"/v1/chats/{chat['id']}"

    out = await owner.call("PATCH", path, 200, json={"title": "after", "description": "about us"})
    assert out["title"] == "after" and out["description"] == "about us"
    ev = await sock.until(is_event("chat.updated", chat["id"]))
    assert ev["data"] == {"title": "after", "description": "about us", "by": owner.username}

    out = await admin.call("PATCH", path, 200, json={"slow_mode_seconds": 30})
    assert out["slow_mode_seconds"] == 30 and out["title"] == "after"
    ev = await sock.until(is_event("chat.updated", chat["id"]))
    assert ev["data"] == {"slow_mode_seconds": 30, "by": admin.username}

    denied = await member.call("PATCH", path, 403, json={"title": "mine"})
    assert code(denied) == "chat_admin_required"
    await quiet(sock)
    seen = await member.call("GET", path, 200)
    assert (seen["title"], seen["description"], seen["slow_mode_seconds"]) == ("after", "about us", 30)
    assert code(await owner.call("PATCH", path, 422, json={"slow_mode_seconds": -1})) == "validation_error"
    assert code(await owner.call("PATCH", path, 422, json={"title": ""})) == "validation_error"

    dm = await owner.call("POST", "/v1/chats/direct", 201, json={"username": member.username})
    assert code(await owner.call("PATCH", f"/v1/chats/{dm['id']}", 409, json={"title": "dm"})) == "wrong_chat_kind"
    await sock.close()


async def test_roles_add_remove_leave_and_events(live: Live) -> None:
    owner, admin, admin2, member = (await live.user("own"), await live.user("adm"), await live.user("adm2"),
                                    await live.user("mem"))
    dave, erin = await live.user("dave"), await live.user("erin")
    chat = await new_chat(owner, "group", admin, admin2, member, title="roles")
    cid = chat["id"]
    watch = await ready_socket(member)
    dave_sock = await ready_socket(dave)

    # change role: owner only
    out = await owner.call("PUT", f"/v1/chats/{cid}/members/{admin.username}/role", 200, json={"role": "admin"})
    assert out["role"] == "admin" and out["user"]["username"] == admin.username
    ev = await watch.until(is_event("member.role_changed", cid))
    assert ev["data"]["user"]["username"] == admin.username and ev["data"]["role"] == "admin"
    assert ev["data"]["by"] == owner.username
    await make_admin(owner, cid, admin2)
    denied = await admin.call("PUT", f"/v1/chats/{cid}/members/{member.username}/role", 403, json={"role": "admin"})
    assert code(denied) == "chat_admin_required"
    assert (await members(owner, cid))[member.username]["role"] == "member"

    # add: admins; the added user's open socket learns it and then gets the chat's messages
    added = await admin.call("POST", f"/v1/chats/{cid}/members", 201, json={"username": dave.username})
    assert added["role"] == "member" and added["user"]["username"] == dave.username
    joined = await dave_sock.until(is_event("member.joined", cid))
    assert joined["data"]["user"]["username"] == dave.username and joined["data"]["by"] == admin.username
    assert joined["data"]["chat"]["id"] == cid and joined["data"]["chat"]["title"] == "roles"
    ev = await watch.until(is_event("member.joined", cid))
    assert ev["data"]["user"]["username"] == dave.username
    msg = await post(owner, chat)
    assert (await dave_sock.until(is_event("message.created", cid)))["data"]["id"] == msg["id"]
    again = await owner.call("POST", f"/v1/chats/{cid}/members", 409, json={"username": dave.username})
    assert code(again) == "already_member"
    denied = await member.call("POST", f"/v1/chats/{cid}/members", 403, json={"username": erin.username})
    assert code(denied) == "chat_admin_required"

    # remove: admins remove members; only an owner removes an admin; nobody removes an owner
    assert code(await member.call("DELETE", f"/v1/chats/{cid}/members/{dave.username}", 403)) \
        == "chat_admin_required"
    assert code(await admin.call("DELETE", f"/v1/chats/{cid}/members/{admin2.username}", 403)) == "forbidden"
    assert code(await admin.call("DELETE", f"/v1/chats/{cid}/members/{owner.username}", 403)) == "forbidden"
    assert code(await owner.call("DELETE", f"/v1/chats/{cid}/members/{owner.username}", 400)) \
        == "cannot_target_self"
    assert code(await owner.call("DELETE", f"/v1/chats/{cid}/members/{erin.username}", 404)) == "not_a_member"
    await admin.call("DELETE", f"/v1/chats/{cid}/members/{dave.username}", 204)
    ev = await watch.until(is_event("member.removed", cid))
    assert ev["data"] == {"user": ev["data"]["user"], "by": admin.username}
    assert ev["data"]["user"]["username"] == dave.username
    await owner.call("DELETE", f"/v1/chats/{cid}/members/{admin2.username}", 204)
    ev = await watch.until(is_event("member.removed", cid))
    assert ev["data"]["user"]["username"] == admin2.username and ev["data"]["by"] == owner.username
    assert code(await dave.call("GET", f"/v1/chats/{cid}", 404)) == "chat_not_found"

    # leave; the last owner must transfer first
    assert code(await owner.call("POST", f"/v1/chats/{cid}/leave", 409)) == "last_owner"
    assert code(await admin.call("POST", f"/v1/chats/{cid}/transfer", 403, json={"username": member.username})) \
        == "chat_admin_required"
    await owner.call("POST", f"/v1/chats/{cid}/transfer", 204, json={"username": admin.username})
    changes = [await watch.until(is_event("member.role_changed", cid)) for _ in range(2)]
    assert {(c["data"]["user"]["username"], c["data"]["role"]) for c in changes} == {
        (admin.username, "owner"), (owner.username, "admin")}
    roles = {n: m["role"] for n, m in (await members(member, cid)).items()}
    assert roles == {owner.username: "admin", admin.username: "owner", member.username: "member"}
    assert code(await owner.call("PUT", f"/v1/chats/{cid}/members/{member.username}/role", 403,
                                 json={"role": "admin"})) == "chat_admin_required"
    await owner.call("POST", f"/v1/chats/{cid}/leave", 204)
    ev = await watch.until(is_event("member.left", cid))
    assert ev["data"]["user"]["username"] == owner.username and ev["data"]["by"] == owner.username
    assert code(await owner.call("GET", f"/v1/chats/{cid}/members", 404)) == "chat_not_found"
    await member.call("POST", f"/v1/chats/{cid}/leave", 204)
    assert cid not in [c["id"] for c in (await member.call("GET", "/v1/chats", 200))["chats"]]
    # the only member left may leave without transferring
    await admin.call("POST", f"/v1/chats/{cid}/leave", 204)
    dm = await admin.call("POST", "/v1/chats/direct", 201, json={"username": member.username})
    assert code(await admin.call("POST", f"/v1/chats/{dm['id']}/leave", 409)) == "wrong_chat_kind"
    await watch.close()
    await dave_sock.close()


async def test_removed_member_gets_its_removal_then_nothing_of_that_chat(live: Live) -> None:
    owner, bob, carol = await live.user("own"), await live.user("bob"), await live.user("carol")
    chat = await new_chat(owner, "group", bob, carol, title="g")
    control = await new_chat(owner, "group", bob, title="control")
    bob_sock = await ready_socket(bob)
    carol_sock = await ready_socket(carol)

    await owner.call("DELETE", f"/v1/chats/{chat['id']}/members/{bob.username}", 204)
    removed = await next_chat_event(bob_sock)
    assert removed["type"] == "member.removed" and removed["chat_id"] == chat["id"], removed
    assert removed["data"]["user"]["username"] == bob.username
    await owner.call("PATCH", f"/v1/chats/{chat['id']}", 200, json={"title": "without bob"})
    after = await post(owner, chat)
    await owner.call("POST", f"/v1/chats/{chat['id']}/members", 201, json={"username": (await live.user()).username})
    barrier = await post(owner, control)
    # carol sees everything; bob's next frame is the control chat's message: nothing of the old chat
    for type_ in ("member.removed", "chat.updated", "message.created", "member.joined"):
        await carol_sock.until(is_event(type_, chat["id"]))
    nxt = await next_chat_event(bob_sock)
    assert nxt["chat_id"] == control["id"] and nxt["data"]["id"] == barrier["id"], nxt
    assert after["id"] != barrier["id"]
    sent = await bob_sock.command("send", chat_id=chat["id"], txn_id="late", e2e={
        "algorithm": "a", "sender_key": "k", "session_id": "s", "ciphertext": "c"})
    assert sent["type"] == "error" and code(sent) == "chat_not_found"
    await quiet(bob_sock)
    await bob_sock.close()
    await carol_sock.close()


async def test_invites_expiry_max_uses_revoke_and_join(live: Live) -> None:
    owner, admin, member = await live.user("own"), await live.user("adm"), await live.user("mem")
    j1, j2, j3, outsider = (await live.user("j"), await live.user("j"), await live.user("j"),
                            await live.user("out"))
    chat = await new_chat(owner, "group", admin, member, title="club")
    cid = chat["id"]
    await make_admin(owner, cid, admin)

    before = datetime.now(UTC)
    inv = await admin.call("POST", f"/v1/chats/{cid}/invites", 201, json={"expires_in_seconds": 3600, "max_uses": 2})
    expires = datetime.fromisoformat(inv["expires_at"])
    assert before + timedelta(seconds=3590) < expires < datetime.now(UTC) + timedelta(seconds=3610)
    assert (inv["chat_id"], inv["max_uses"], inv["uses"], inv["revoked"]) == (cid, 2, 0, False)
    assert code(await member.call("POST", f"/v1/chats/{cid}/invites", 403, json={})) == "chat_admin_required"
    assert code(await member.call("GET", f"/v1/chats/{cid}/invites", 403)) == "chat_admin_required"
    assert code(await outsider.call("GET", f"/v1/chats/{cid}/invites", 404)) == "chat_not_found"

    j1_sock = await ready_socket(j1)
    joined = await j1.call("POST", f"/v1/invites/{inv['code']}/join", 200)
    assert joined["id"] == cid and joined["role"] == "member" and joined["member_count"] == 4
    ev = await j1_sock.until(is_event("member.joined", cid))
    assert ev["data"]["user"]["username"] == j1.username and ev["data"]["by"] is None
    msg = await post(owner, chat)
    assert (await j1_sock.until(is_event("message.created", cid)))["data"]["id"] == msg["id"]
    # joining twice spends no use
    again = await j1.call("POST", f"/v1/invites/{inv['code']}/join", 200)
    assert again["id"] == cid
    listed = {i["code"]: i for i in (await owner.call("GET", f"/v1/chats/{cid}/invites", 200))["invites"]}
    assert listed[inv["code"]]["uses"] == 1
    await j2.call("POST", f"/v1/invites/{inv['code']}/join", 200)
    used_up = await j3.call("POST", f"/v1/invites/{inv['code']}/join", 404)
    assert code(used_up) == "invite_invalid"
    assert code(await j3.call("GET", f"/v1/chats/{cid}", 404)) == "chat_not_found"
    listed = {i["code"]: i for i in (await admin.call("GET", f"/v1/chats/{cid}/invites", 200))["invites"]}
    assert listed[inv["code"]]["uses"] == 2

    # revoke: admins of its chat; then joining fails
    other = await owner.call("POST", f"/v1/chats/{cid}/invites", 201, json={})
    assert other["expires_at"] is None and other["max_uses"] is None
    assert code(await member.call("DELETE", f"/v1/invites/{other['code']}", 403)) == "chat_admin_required"
    assert code(await outsider.call("DELETE", f"/v1/invites/{other['code']}", 404)) == "invite_not_found"
    revoked = await admin.call("DELETE", f"/v1/invites/{other['code']}", 200)
    assert revoked["revoked"] is True and revoked["code"] == other["code"]
    assert code(await j3.call("POST", f"/v1/invites/{other['code']}/join", 404)) == "invite_invalid"

    # expiry: the same code works until its time, then not
    timed = await owner.call("POST", f"/v1/chats/{cid}/invites", 201, json={"expires_in_seconds": 60})
    async with live.server.state.sessions() as db:
        await db.execute(update(Invite).where(Invite.code == timed["code"])
                         .values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
        await db.commit()
    assert code(await j3.call("POST", f"/v1/invites/{timed['code']}/join", 404)) == "invite_invalid"
    assert code(await j3.call("POST", "/v1/invites/no-such-code/join", 404)) == "invite_invalid"
    assert code(await owner.call("POST", f"/v1/chats/{cid}/invites", 422, json={"expires_in_seconds": 5})) \
        == "validation_error"
    names = set(await members(owner, cid))
    assert names == {owner.username, admin.username, member.username, j1.username, j2.username}
    await j1_sock.close()


async def test_concurrent_adds_never_pass_1000_members(sqlite_url: str, live_backends: Live) -> None:
    # sqlite_url first: it migrates the SQLite database outside the event loop (see the report)
    live = live_backends
    owner = await live.user("own")
    names = await insert_users(live, 997)
    chat = await owner.call("POST", "/v1/chats", 201, json={"kind": "group", "title": "race", "members": names})
    assert chat["member_count"] == 998
    admins = [await live.user("adm") for _ in range(2)]
    for a in admins:
        await owner.call("POST", f"/v1/chats/{chat['id']}/members", 201, json={"username": a.username})
        await make_admin(owner, chat["id"], a)
    await owner.call("DELETE", f"/v1/chats/{chat['id']}/members/{names[0]}", 204)
    await owner.call("DELETE", f"/v1/chats/{chat['id']}/members/{names[1]}", 204)
    # 998 members: six admins' adds race for the last two places
    newcomers = await insert_users(live, 6, prefix="late")
    adders = [owner, *admins] * 2
    results = await asyncio.gather(*(
        who.http.post(f"/v1/chats/{chat['id']}/members", json={"username": name})
        for who, name in zip(adders, newcomers, strict=True)))
    statuses = sorted(r.status_code for r in results)
    assert statuses == [201, 201, 409, 409, 409, 409], [r.text for r in results]
    assert all(r.json()["error"]["code"] == "group_full" for r in results if r.status_code == 409)
    assert (await owner.call("GET", f"/v1/chats/{chat['id']}", 200))["member_count"] == 1000
    assert len(await members(owner, chat["id"])) == 1000
