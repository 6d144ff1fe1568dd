"""Messages over a live server, over REST and over WebSocket commands."""

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from tests.kit.chatkit import (
    code,
    envelope,
    is_event,
    make_admin,
    new_chat,
    post,
    quiet,
    ready_socket,
    txn,
)
from tests.kit.livekit import Client, Live
from tests.kit.wskit import Socket

LIMIT = 64 * 1024


async def test_text_up_to_64_kib_in_channels(live: Live) -> None:
    owner, reader = await live.user("own"), await live.user("rd")
    chat = await new_chat(owner, "channel", reader, title="big")
    path = f"/v1/chats/{chat['id']}/messages"
    sock = await ready_socket(reader)
    owner_sock = await ready_socket(owner)

    ascii_max = await post(owner, chat, "a" * LIMIT)
    assert len(ascii_max["text"]) == LIMIT
    wide_max = await post(owner, chat, "é" * (LIMIT // 2))  # two bytes each: exactly 64 KiB
    assert wide_max["text"] == "é" * (LIMIT // 2)
    for text in ("a" * (LIMIT + 1), "é" * (LIMIT // 2) + "a"):
        r = await owner.http.post(path, json={"txn_id": txn(), "text": text})
        assert r.status_code == 422, r.text
        assert code(r.json()) == "validation_error" and r.json()["error"]["details"]["errors"]
    assert code(await owner.call("POST", path, 422, json={"txn_id": txn(), "text": "   "})) == "validation_error"
    assert code(await owner.call("POST", path, 422, json={"txn_id": txn()})) == "validation_error"
    got = [await sock.until(is_event("message.created", chat["id"])) for _ in range(2)]
    assert [len(f["data"]["text"].encode()) for f in got] == [LIMIT, LIMIT]

    ack = await owner_sock.command("send", chat_id=chat["id"], txn_id=txn(), text="b" * LIMIT)
    assert ack["type"] == "ack" and len(ack["result"]["text"]) == LIMIT
    err = await owner_sock.command("send", chat_id=chat["id"], txn_id=txn(), text="b" * (LIMIT + 1))
    assert err["type"] == "error" and code(err) == "validation_error"
    await quiet(owner_sock)  # the socket stays open after an error
    frame = await sock.until(is_event("message.created", chat["id"]))
    assert frame["data"]["id"] == ack["result"]["id"]
    await quiet(sock)
    history = await reader.call("GET", path, 200)
    assert [len(m["text"].encode()) for m in history["messages"]] == [LIMIT, LIMIT, LIMIT]
    await sock.close()
    await owner_sock.close()


async def test_envelopes_in_dms_and_groups_text_in_channels(live: Live) -> None:
    alice, bob = await live.user("alice"), await live.user("bob")
    dm = await alice.call("POST", "/v1/chats/direct", 201, json={"username": bob.username})
    group = await new_chat(alice, "group", bob, title="g")
    channel = await new_chat(alice, "channel", bob, title="c")
    bob_sock = await ready_socket(bob)
    sock = await ready_socket(alice)

    for chat in (dm, group):
        err = await alice.call("POST", f"/v1/chats/{chat['id']}/messages", 400, json={"txn_id": txn(), "text": "hi"})
        assert code(err) == "e2e_required"
        env = envelope(chat["id"])
        sent = await post(alice, chat, e2e=env)
        assert sent["e2e"] == env and sent["text"] is None and sent["sender"] == alice.username
        frame = await bob_sock.until(is_event("message.created", chat["id"]))
        assert frame["data"]["e2e"] == env and frame["seq"] == sent["seq"]
        ws_err = await sock.command("send", chat_id=chat["id"], txn_id=txn(), text="plain")
        assert ws_err["type"] == "error" and code(ws_err) == "e2e_required"
        ws_ok = await sock.command("send", chat_id=chat["id"], txn_id=txn(), e2e=env)
        assert ws_ok["type"] == "ack" and ws_ok["result"]["e2e"] == env
        frame = await bob_sock.until(is_event("message.created", chat["id"]))
        assert frame["data"]["id"] == ws_ok["result"]["id"]
        history = await bob.call("GET", f"/v1/chats/{chat['id']}/messages", 200)
        assert [m["e2e"] for m in history["messages"]] == [env, env]

    err = await post(alice, channel["id"], e2e=envelope(), expect=400)
    assert code(err) == "e2e_not_allowed"
    ws_err = await sock.command("send", chat_id=channel["id"], txn_id=txn(), e2e=envelope())
    assert ws_err["type"] == "error" and code(ws_err) == "e2e_not_allowed"
    neither = await sock.command("send", chat_id=channel["id"], txn_id=txn())
    assert neither["type"] == "error" and code(neither) == "validation_error"
    await quiet(sock)
    await quiet(bob_sock)
    await sock.close()
    await bob_sock.close()


async def test_same_txn_id_answers_with_the_first_message(live: Live) -> None:
    alice, bob = await live.user("alice"), await live.user("bob")
    chat = await new_chat(alice, "channel", bob)
    body = {"txn_id": "same-1", "text": "once"}
    first = await alice.call("POST", f"/v1/chats/{chat['id']}/messages", 201, json=body)
    again = await alice.call("POST", f"/v1/chats/{chat['id']}/messages", 201, json=body)
    assert again == first
    sock = await ready_socket(alice)
    ws1 = await sock.command("send", chat_id=chat["id"], txn_id="same-2", text="twice")
    ws2 = await sock.command("send", chat_id=chat["id"], txn_id="same-2", text="twice")
    assert ws1["type"] == ws2["type"] == "ack" and ws1["result"] == ws2["result"]
    history = await bob.call("GET", f"/v1/chats/{chat['id']}/messages", 200)
    assert [m["text"] for m in history["messages"]] == ["once", "twice"]
    await sock.close()


async def test_a_replayed_txn_id_gets_the_first_message_whatever_it_carries(live: Live) -> None:
    """The first send wins (docs/protocol.md, Idempotency): bodies are not compared, since an E2E retry
    is encrypted again and so always differs."""
    alice, bob = await live.user("alice"), await live.user("bob")
    chat = await new_chat(alice, "channel", bob)
    other = await new_chat(alice, "channel", bob, title="other")
    sock = await ready_socket(alice)  # first: bob's socket then sees no presence frame for it
    watch = await ready_socket(bob)
    path = f"/v1/chats/{chat['id']}/messages"
    first = await alice.call("POST", path, 201, json={"txn_id": "replayed", "text": "the first"})
    created = await watch.until(is_event("message.created", chat["id"]))
    assert created["data"]["text"] == "the first"
    reply_target = await post(alice, chat, "a reply target")
    await watch.until(is_event("message.created", chat["id"]))
    replays = [
        await alice.call("POST", path, 201, json={"txn_id": "replayed", "text": "something else"}),
        await alice.call("POST", path, 201, json={"txn_id": "replayed", "text": "x", "reply_to": reply_target["id"]}),
        await alice.call("POST", f"/v1/chats/{other['id']}/messages", 201,
                         json={"txn_id": "replayed", "text": "elsewhere"}),
    ]
    assert replays == [first, first, first]
    ws = await sock.command("send", chat_id=chat["id"], txn_id="replayed", text="over the socket")
    assert ws["type"] == "ack" and ws["result"] == first
    # nothing stored or broadcast for the replays; another session may use the same id for a new message
    await quiet(watch)
    texts = [m["text"] for m in (await bob.call("GET", path, 200))["messages"]]
    assert texts == ["the first", "a reply target"]
    assert (await bob.call("GET", f"/v1/chats/{other['id']}/messages", 200))["messages"] == []
    tokens = await alice.call("POST", "/v1/auth/login", 200,
                              json={"username": alice.username, "password": "correct horse battery"})
    alice2 = Client(live.server, alice.username, tokens)
    fresh = await alice2.call("POST", path, 201, json={"txn_id": "replayed", "text": "new session"})
    assert fresh["id"] != first["id"] and fresh["text"] == "new session"
    await alice2.close()
    await sock.close()
    await watch.close()


async def test_reply_to_must_be_in_the_same_chat(live: Live) -> None:
    alice, bob = await live.user("alice"), await live.user("bob")
    chat = await new_chat(alice, "channel", bob, title="a")
    other = await new_chat(alice, "channel", bob, title="b")
    first = await post(alice, chat, "first")
    elsewhere = await post(alice, other, "elsewhere")
    reply = await post(alice, chat, "answer", reply_to=first["id"])
    assert reply["reply_to"] == first["id"]
    for target in (elsewhere["id"], 10**9):
        err = await post(alice, chat, "bad", reply_to=target, expect=400)
        assert code(err) == "reply_not_found" and err["error"]["details"]["reply_to"] == target
    sock = await ready_socket(alice)
    ok = await sock.command("send", chat_id=chat["id"], txn_id=txn(), text="ws answer", reply_to=first["id"])
    assert ok["type"] == "ack" and ok["result"]["reply_to"] == first["id"]
    bad = await sock.command("send", chat_id=chat["id"], txn_id=txn(), text="ws bad", reply_to=elsewhere["id"])
    assert bad["type"] == "error" and code(bad) == "reply_not_found"
    await quiet(sock)
    history = await bob.call("GET", f"/v1/chats/{chat['id']}/messages", 200)
    assert [(m["text"], m["reply_to"]) for m in history["messages"]] == [
        ("first", None), ("answer", first["id"]), ("ws answer", first["id"])]
    await sock.close()


async def test_edit_by_the_author_only(live: Live) -> None:
    owner, admin, member = await live.user("own"), await live.user("adm"), await live.user("mem")
    group = await new_chat(owner, "group", admin, member, title="g")
    await make_admin(owner, group["id"], admin)
    channel = await new_chat(owner, "channel", member, title="c")
    watch = await ready_socket(member)
    sock = await ready_socket(owner)

    msg = await post(owner, channel, "draft")
    assert msg["edited_at"] is None
    base = f"/v1/chats/{channel['id']}/messages/{msg['id']}"
    await member.call("PUT", f"{base}/reactions/{quote('👀')}", 204)
    edited = await owner.call("PATCH", base, 200, json={"text": "final"})
    assert edited["text"] == "final" and edited["id"] == msg["id"] and edited["seq"] == msg["seq"]
    assert edited["reactions"] == {"👀": [member.username]}  # an edit replaces the content, nothing else
    assert datetime.fromisoformat(edited["edited_at"]) >= datetime.fromisoformat(msg["created_at"])
    ev = await watch.until(is_event("message.edited", channel["id"]))
    assert ev["data"]["id"] == msg["id"] and ev["data"]["text"] == "final" and ev["data"]["edited_at"]
    assert ev["data"]["reactions"] == {"👀": [member.username]}
    assert ev["seq"] > msg["seq"]
    assert code(await owner.call("PATCH", base, 400, json={"e2e": envelope()})) == "e2e_not_allowed"

    mine = await post(member, group, e2e=envelope("m"))
    gpath = f"/v1/chats/{group['id']}/messages/{mine['id']}"
    for other in (admin, owner):
        assert code(await other.call("PATCH", gpath, 403, json={"e2e": envelope("x")})) == "not_author"
    ws_denied = await sock.command("edit", chat_id=group["id"], message_id=mine["id"], e2e=envelope("x"))
    assert ws_denied["type"] == "error" and code(ws_denied) == "not_author"
    await quiet(sock)
    new_env = envelope("edited")
    ws_ok = await watch.command("edit", chat_id=group["id"], message_id=mine["id"], e2e=new_env)
    assert ws_ok["type"] == "ack" and ws_ok["result"]["e2e"] == new_env and ws_ok["result"]["edited_at"]
    ev = await sock.until(is_event("message.edited", group["id"]))
    assert ev["data"]["e2e"] == new_env
    wrong_chat = await owner.call("PATCH", f"/v1/chats/{channel['id']}/messages/{mine['id']}", 404,
                                  json={"text": "x"})
    assert code(wrong_chat) == "message_not_found"
    history = await member.call("GET", f"/v1/chats/{group['id']}/messages", 200)
    assert history["messages"][-1]["e2e"] == new_env and history["messages"][-1]["edited_at"]
    await sock.close()
    await watch.close()


async def test_delete_for_everyone_leaves_a_tombstone(live: Live) -> None:
    owner, admin, member, other = (await live.user("own"), await live.user("adm"), await live.user("mem"),
                                   await live.user("oth"))
    group = await new_chat(owner, "group", admin, member, other, title="g")
    gid = group["id"]
    await make_admin(owner, gid, admin)
    watch = await ready_socket(other)

    by_member = await post(member, group, e2e=envelope("secret"))
    await owner.call("PUT", f"/v1/chats/{gid}/messages/{by_member['id']}/reactions/{quote('👍')}", 204)
    await owner.call("POST", f"/v1/chats/{gid}/pins", 204, json={"message_id": by_member["id"]})
    assert code(await other.call("DELETE", f"/v1/chats/{gid}/messages/{by_member['id']}", 403)) == "not_author"
    await member.call("DELETE", f"/v1/chats/{gid}/messages/{by_member['id']}", 204)
    ev = await watch.until(is_event("message.deleted", gid))
    assert ev["data"] == {"message_id": by_member["id"], "by": member.username}
    history = (await other.call("GET", f"/v1/chats/{gid}/messages", 200))["messages"]
    tomb = next(m for m in history if m["id"] == by_member["id"])
    assert tomb["deleted"] is True and tomb["text"] is None and tomb["e2e"] is None
    assert tomb["pinned"] is False and tomb["reactions"] == {}
    assert (await other.call("GET", f"/v1/chats/{gid}/pins", 200))["messages"] == []
    assert code(await member.call("PATCH", f"/v1/chats/{gid}/messages/{by_member['id']}", 404,
                                  json={"e2e": envelope()})) == "message_not_found"
    # deleting twice is fine and emits nothing more
    await member.call("DELETE", f"/v1/chats/{gid}/messages/{by_member['id']}", 204)

    # a chat admin deletes anyone's message (over WS too)
    second = await post(member, group, e2e=envelope("2"))
    admin_sock = await ready_socket(admin)
    ack = await admin_sock.command("delete", chat_id=gid, message_id=second["id"])
    assert ack["type"] == "ack"
    ev = await watch.until(is_event("message.deleted", gid))
    assert ev["data"] == {"message_id": second["id"], "by": admin.username}
    third = await post(owner, group, e2e=envelope("3"))
    err = await watch.command("delete", chat_id=gid, message_id=third["id"])
    assert err["type"] == "error" and code(err) == "not_author"
    await quiet(watch)

    # in a DM only the author deletes
    dm = await member.call("POST", "/v1/chats/direct", 201, json={"username": other.username})
    dm_msg = await post(member, dm, e2e=envelope("dm"))
    assert code(await other.call("DELETE", f"/v1/chats/{dm['id']}/messages/{dm_msg['id']}", 403)) == "not_author"
    await member.call("DELETE", f"/v1/chats/{dm['id']}/messages/{dm_msg['id']}", 204)
    await watch.close()
    await admin_sock.close()


async def reacting(live: Live) -> tuple[Client, Client, int, dict[str, Any], Socket]:
    """alice's channel with bob, a message of hers there to react to, and bob's socket."""
    alice, bob = await live.user("alice"), await live.user("bob")
    chat = await new_chat(alice, "channel", bob, title="r")
    msg = await post(alice, chat, "react to me")
    return alice, bob, chat["id"], msg, await ready_socket(bob)


async def test_reactions_one_per_emoji_per_user(sqlite_url: str, live_backends: Live) -> None:
    # sqlite_url first: it migrates the SQLite database outside the event loop
    alice, bob, cid, msg, watch = await reacting(live_backends)
    base = f"/v1/chats/{cid}/messages/{msg['id']}/reactions/"
    emoji = ["👍", "👍🏽", "😀", "😁"]

    for e in emoji:
        await alice.call("PUT", base + quote(e), 204)
    await alice.call("PUT", base + quote("👍"), 204)  # again: still one, no event
    await bob.call("PUT", base + quote("😀"), 204)
    added = [await watch.until(is_event("reaction.added", cid)) for _ in range(5)]
    assert [(f["data"]["emoji"], f["data"]["user"]) for f in added] == [
        *((e, alice.username) for e in emoji), ("😀", bob.username)]
    assert all(f["data"]["message_id"] == msg["id"] for f in added)

    async def reactions() -> dict[str, list[str]]:
        page = await bob.call("GET", f"/v1/chats/{cid}/messages", 200)
        return dict(page["messages"][0]["reactions"])

    assert await reactions() == {"👍": [alice.username], "👍🏽": [alice.username], "😀": [alice.username, bob.username],
                                 "😁": [alice.username]}
    await alice.call("DELETE", base + quote("👍"), 204)
    await alice.call("DELETE", base + quote("👍"), 204)  # already gone: nothing happens
    await alice.call("DELETE", base + quote("😁"), 204)
    removed = [await watch.until(is_event("reaction.removed", cid)) for _ in range(2)]
    assert [f["data"]["emoji"] for f in removed] == ["👍", "😁"]
    assert await reactions() == {"👍🏽": [alice.username], "😀": [alice.username, bob.username]}

    alice_sock = await ready_socket(alice)
    ack = await watch.command("react", chat_id=cid, message_id=msg["id"], emoji="👍🏽")
    assert ack["type"] == "ack"
    ev = await alice_sock.until(is_event("reaction.added", cid))
    assert ev["data"] == {"message_id": msg["id"], "user": bob.username, "emoji": "👍🏽"}
    ack = await watch.command("react", chat_id=cid, message_id=msg["id"], emoji="😀", remove=True)
    assert ack["type"] == "ack"
    ev = await alice_sock.until(is_event("reaction.removed", cid))
    assert ev["data"] == {"message_id": msg["id"], "user": bob.username, "emoji": "😀"}
    assert await reactions() == {"👍🏽": [alice.username, bob.username], "😀": [alice.username]}
    assert code(await alice.call("PUT", f"/v1/chats/{cid}/messages/{10**9}/reactions/{quote('👍')}", 404)) \
        == "message_not_found"
    await watch.close()
    await alice_sock.close()


async def test_a_reaction_is_one_emoji(live: Live) -> None:
    alice, bob, cid, msg, watch = await reacting(live)
    base = f"/v1/chats/{cid}/messages/{msg['id']}/reactions/"
    # words, two emoji, a lone skin tone or joiner, padding: refused over REST and over the socket
    for bad in ("notanemoji", "a", "+1", "👍👍", "🏻", "\u200d", " 👍", "🇫"):
        assert code(await alice.call("PUT", base + quote(bad), 422)) == "validation_error", bad
        assert code(await alice.call("DELETE", base + quote(bad), 422)) == "validation_error", bad
        refused = await watch.command("react", chat_id=cid, message_id=msg["id"], emoji=bad)
        assert refused["type"] == "error" and code(refused) == "validation_error", bad
    # one emoji as people see it: ZWJ sequences, flags (also subdivision ones), keycaps, skin tones
    good = ["👩🏽‍💻", "🏳️‍🌈", "🇫🇷", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "1️⃣", "👍🏽", "🫠"]
    for e in good:
        await alice.call("PUT", base + quote(e), 204)
    added = [await watch.until(is_event("reaction.added", cid)) for _ in good]
    assert [f["data"]["emoji"] for f in added] == good  # nothing was stored or broadcast for the refused ones
    # ❤ and ❤️ are one reaction, kept fully qualified
    await alice.call("PUT", base + quote("❤"), 204)
    assert (await watch.until(is_event("reaction.added", cid)))["data"]["emoji"] == "❤️"
    ack = await watch.command("react", chat_id=cid, message_id=msg["id"], emoji="❤️")
    assert ack["type"] == "ack"
    page = await bob.call("GET", f"/v1/chats/{cid}/messages", 200)
    reactions = page["messages"][0]["reactions"]
    assert reactions["❤️"] == [alice.username, bob.username] and "❤" not in reactions
    await alice.call("DELETE", base + quote("❤"), 204)
    assert (await watch.until(is_event("reaction.removed", cid)))["data"]["emoji"] == "❤️"
    await watch.close()


async def test_pins_by_admins(live: Live) -> None:
    owner, admin, member = await live.user("own"), await live.user("adm"), await live.user("mem")
    chat = await new_chat(owner, "group", admin, member, title="p")
    cid = chat["id"]
    await make_admin(owner, cid, admin)
    watch = await ready_socket(member)
    first, second = await post(member, chat), await post(owner, chat)

    assert code(await member.call("POST", f"/v1/chats/{cid}/pins", 403, json={"message_id": first["id"]})) \
        == "chat_admin_required"
    await admin.call("POST", f"/v1/chats/{cid}/pins", 204, json={"message_id": first["id"]})
    ev = await watch.until(is_event("message.pinned", cid))
    assert ev["data"] == {"message_id": first["id"], "by": admin.username}
    await owner.call("POST", f"/v1/chats/{cid}/pins", 204, json={"message_id": second["id"]})
    pins = (await member.call("GET", f"/v1/chats/{cid}/pins", 200))["messages"]
    assert [m["id"] for m in pins] == [second["id"], first["id"]]  # newest pin first
    assert all(m["pinned"] for m in pins)
    assert code(await member.call("DELETE", f"/v1/chats/{cid}/pins/{first['id']}", 403)) == "chat_admin_required"
    await admin.call("DELETE", f"/v1/chats/{cid}/pins/{first['id']}", 204)
    ev = await watch.until(is_event("message.unpinned", cid))
    assert ev["data"] == {"message_id": first["id"], "by": admin.username}
    pins = (await member.call("GET", f"/v1/chats/{cid}/pins", 200))["messages"]
    assert [m["id"] for m in pins] == [second["id"]]
    assert code(await owner.call("POST", f"/v1/chats/{cid}/pins", 404, json={"message_id": 10**9})) \
        == "message_not_found"
    # in a DM either member pins
    dm = await member.call("POST", "/v1/chats/direct", 201, json={"username": owner.username})
    dm_msg = await post(owner, dm)
    await member.call("POST", f"/v1/chats/{dm['id']}/pins", 204, json={"message_id": dm_msg["id"]})
    assert [m["id"] for m in (await owner.call("GET", f"/v1/chats/{dm['id']}/pins", 200))["messages"]] \
        == [dm_msg["id"]]
    await watch.close()


async def test_slow_mode_limits_members_not_admins(live: Live) -> None:
    owner, admin, member = await live.user("own"), await live.user("adm"), await live.user("mem")
    chat = await new_chat(owner, "group", admin, member, title="slow")
    cid = chat["id"]
    await make_admin(owner, cid, admin)
    await owner.call("PATCH", f"/v1/chats/{cid}", 200, json={"slow_mode_seconds": 120})

    await post(member, chat)
    r = await member.http.post(f"/v1/chats/{cid}/messages", json={"txn_id": txn(), "e2e": envelope()})
    assert r.status_code == 429, r.text
    assert code(r.json()) == "slow_mode"
    retry_after = int(r.headers["Retry-After"])
    assert 0 < retry_after <= 120
    details = r.json()["error"]["details"]
    allowed_at = datetime.fromisoformat(details["allowed_at"])
    assert allowed_at.tzinfo is not None and allowed_at > datetime.now(UTC)
    assert details["retry_after"] == retry_after
    sock = await ready_socket(member)
    err = await sock.command("send", chat_id=cid, txn_id=txn(), e2e=envelope())
    assert err["type"] == "error" and code(err) == "slow_mode"
    assert datetime.fromisoformat(err["error"]["details"]["allowed_at"]) > datetime.now(UTC)
    await quiet(sock)
    for who in (admin, admin, owner, owner):
        await post(who, chat)
    # turning it off lets the member post again; the refused posts left nothing behind
    await owner.call("PATCH", f"/v1/chats/{cid}", 200, json={"slow_mode_seconds": 0})
    ack = await sock.command("send", chat_id=cid, txn_id=txn(), e2e=envelope())
    assert ack["type"] == "ack"
    history = (await owner.call("GET", f"/v1/chats/{cid}/messages", 200))["messages"]
    assert [m["sender"] for m in history] == [member.username, admin.username, admin.username, owner.username,
                                              owner.username, member.username]
    await sock.close()


async def test_history_pages_in_both_directions(live: Live) -> None:
    alice, bob = await live.user("alice"), await live.user("bob")
    chat = await new_chat(alice, "channel", bob, title="h")
    cid = chat["id"]
    sent = [await post(alice, chat, f"m{i}") for i in range(450)]
    seqs = [m["seq"] for m in sent]
    assert seqs == sorted(seqs) and len(set(seqs)) == 450
    path = f"/v1/chats/{cid}/messages"

    assert code(await bob.call("GET", path, 422, params={"limit": 201})) == "validation_error"
    assert code(await bob.call("GET", path, 422, params={"limit": 0})) == "validation_error"
    assert len((await bob.call("GET", path, 200, params={"limit": 200}))["messages"]) == 200

    back: list[dict[str, object]] = []
    before: int | None = None
    shapes = []
    while True:
        page = await bob.call("GET", path, 200, params={"limit": 200, **({"before": before} if before else {})})
        msgs = page["messages"]
        assert [m["seq"] for m in msgs] == sorted(m["seq"] for m in msgs)  # oldest first
        shapes.append((len(msgs), page["has_more"]))
        back = msgs + back
        if not page["has_more"]:
            break
        before = msgs[0]["seq"]
    assert shapes == [(200, True), (200, True), (50, False)]
    assert [m["id"] for m in back] == [m["id"] for m in sent]

    forward: list[dict[str, object]] = []
    after = 0
    shapes = []
    while True:
        page = await bob.call("GET", path, 200, params={"limit": 200, "after": after})
        msgs = page["messages"]
        shapes.append((len(msgs), page["has_more"]))
        forward += msgs
        if not page["has_more"]:
            break
        after = msgs[-1]["seq"]
    assert shapes == [(200, True), (200, True), (50, False)]
    assert [m["id"] for m in forward] == [m["id"] for m in sent]
    assert [m["text"] for m in forward] == [f"m{i}" for i in range(450)]

    # a window between two cursors
    window = await bob.call("GET", path, 200, params={"after": seqs[99], "before": seqs[110], "limit": 200})
    assert [m["seq"] for m in window["messages"]] == seqs[100:110] and window["has_more"] is False
    last = await bob.call("GET", path, 200, params={"after": seqs[-1]})
    assert last == {"messages": [], "has_more": False, "purged_seq": 0}
    first = await bob.call("GET", path, 200, params={"before": seqs[0]})
    assert first == {"messages": [], "has_more": False, "purged_seq": 0}


async def test_ws_commands_ack_or_error_with_the_request_id(live: Live) -> None:
    alice, bob, stranger = await live.user("alice"), await live.user("bob"), await live.user("x")
    dm = await alice.call("POST", "/v1/chats/direct", 201, json={"username": bob.username})
    cid = dm["id"]
    sock = await ready_socket(alice)

    await sock.ws.send('{"op": "ping", "id": "p-1"}')
    assert await sock.next() == {"type": "pong", "id": "p-1"}
    sent = await sock.command("send", chat_id=cid, txn_id=txn(), e2e=envelope())
    assert sent["type"] == "ack" and sent["result"]["chat_id"] == cid
    for op, fields in (("typing", {"typing": True}), ("read", {"seq": sent["result"]["seq"]}),
                       ("received", {"seq": sent["result"]["seq"]}),
                       ("react", {"message_id": sent["result"]["id"], "emoji": "🎉"}),
                       ("edit", {"message_id": sent["result"]["id"], "e2e": envelope("e")}),
                       ("delete", {"message_id": sent["result"]["id"]})):
        ack = await sock.command(op, chat_id=cid, **fields)
        assert ack["type"] == "ack", (op, ack)
    other = await stranger.call("POST", "/v1/chats/direct", 201, json={"username": bob.username})
    for op, fields in (("send", {"txn_id": txn(), "e2e": envelope()}), ("typing", {}), ("read", {"seq": 1}),
                       ("received", {"seq": 1}), ("react", {"message_id": 1, "emoji": "🎉"}),
                       ("edit", {"message_id": 1, "e2e": envelope()}), ("delete", {"message_id": 1})):
        err = await sock.command(op, chat_id=other["id"], **fields)
        assert err["type"] == "error" and code(err) == "chat_not_found", (op, err)
    bad = await sock.command("fly", chat_id=cid)
    assert bad["type"] == "error" and code(bad) == "bad_request"
    invalid = await sock.command("read", chat_id=cid, seq=-1)
    assert invalid["type"] == "error" and code(invalid) == "validation_error"
    await sock.ws.send(json.dumps({"op": "typing", "chat_id": cid}))  # no id: no answer
    await quiet(sock)
    await sock.close()
