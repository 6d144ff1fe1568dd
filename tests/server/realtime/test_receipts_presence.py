"""Delivery and read receipts, unread counts, typing and presence over a live server."""

import asyncio
from datetime import UTC, datetime, timedelta

from tests.kit.chatkit import (
    chat_entry,
    is_event,
    members,
    new_chat,
    post,
    quiet,
    ready_socket,
    server_conns,
)
from tests.kit.livekit import Live


async def test_delivered_and_read_receipts_reach_the_sender(live: Live) -> None:
    alice, bob, carol = await live.user("alice"), await live.user("bob"), await live.user("carol")
    chat = await new_chat(alice, "group", bob, carol, title="r")
    cid = chat["id"]
    alice_sock = await ready_socket(alice)
    bob_sock = await ready_socket(bob)
    sent = [await post(alice, chat) for _ in range(3)]
    own = await post(bob, chat)  # bob's own message never counts as unread for bob

    assert (await chat_entry(bob, cid))["unread_count"] == 3
    assert (await chat_entry(carol, cid))["unread_count"] == 4
    assert (await chat_entry(alice, cid))["unread_count"] == 1

    ack = await bob_sock.command("received", chat_id=cid, seq=sent[2]["seq"])
    assert ack["type"] == "ack"
    receipt = await alice_sock.until(is_event("receipt", cid))
    assert receipt["data"] == {"user": bob.username, "read_seq": 0, "delivered_seq": sent[2]["seq"]}
    assert (await chat_entry(bob, cid))["unread_count"] == 3  # delivered is not read

    await bob.call("POST", f"/v1/chats/{cid}/read", 204, json={"seq": sent[1]["seq"]})
    receipt = await alice_sock.until(is_event("receipt", cid))
    assert receipt["data"] == {"user": bob.username, "read_seq": sent[1]["seq"], "delivered_seq": sent[2]["seq"]}
    assert (await chat_entry(bob, cid))["unread_count"] == 1
    listed = await members(alice, cid)
    assert (listed[bob.username]["read_seq"], listed[bob.username]["delivered_seq"]) == (sent[1]["seq"],
                                                                                         sent[2]["seq"])
    assert (listed[carol.username]["read_seq"], listed[carol.username]["delivered_seq"]) == (0, 0)

    # marks are clamped to the last message: receipts are events too, and two clients that mark
    # "everything I have seen" read must not answer each other's receipts forever
    last = (await chat_entry(bob, cid))["last_seq"]
    assert last > own["seq"]
    ack = await bob_sock.command("read", chat_id=cid, seq=last)
    assert ack["type"] == "ack"
    receipt = await alice_sock.until(is_event("receipt", cid))
    assert receipt["data"] == {"user": bob.username, "read_seq": own["seq"], "delivered_seq": own["seq"]}
    last = own["seq"]
    assert (await chat_entry(bob, cid))["unread_count"] == 0
    assert (await chat_entry(carol, cid))["unread_count"] == 4  # one reader's marks are theirs alone

    # marks never move backwards and a repeated mark emits nothing; a mark past the end is clamped
    await bob.call("POST", f"/v1/chats/{cid}/read", 204, json={"seq": 1})
    await bob.call("POST", f"/v1/chats/{cid}/read", 204, json={"seq": last})
    await bob.call("POST", f"/v1/chats/{cid}/read", 204, json={"seq": receipt["seq"]})
    await bob.call("POST", f"/v1/chats/{cid}/read", 204, json={"seq": last + 1000})
    assert (await bob_sock.command("received", chat_id=cid, seq=last + 1000))["type"] == "ack"
    listed = await members(alice, cid)
    assert (listed[bob.username]["read_seq"], listed[bob.username]["delivered_seq"]) == (last, last)
    fresh = await post(alice, chat)
    created = await alice_sock.until(lambda f: f.get("chat_id") == cid)
    assert created["type"] == "message.created" and created["data"]["id"] == fresh["id"]
    assert (await chat_entry(bob, cid))["unread_count"] == 1
    await alice_sock.close()
    await bob_sock.close()


async def test_channels_keep_read_positions_without_receipt_events(live: Live) -> None:
    owner, reader = await live.user("own"), await live.user("rd")
    chat = await new_chat(owner, "channel", reader, title="c")
    owner_sock = await ready_socket(owner)
    msg = await post(owner, chat, "news")
    await owner_sock.until(is_event("message.created", chat["id"]))
    assert (await chat_entry(reader, chat["id"]))["unread_count"] == 1
    await reader.call("POST", f"/v1/chats/{chat['id']}/read", 204, json={"seq": msg["seq"]})
    assert (await chat_entry(reader, chat["id"]))["unread_count"] == 0
    assert (await members(owner, chat["id"]))[reader.username]["read_seq"] == msg["seq"]
    await quiet(owner_sock)
    await owner_sock.close()


async def test_typing_reaches_other_members_not_the_typist(live: Live) -> None:
    alice, bob, carol, stranger = (await live.user("alice"), await live.user("bob"), await live.user("carol"),
                                   await live.user("x"))
    chat = await new_chat(alice, "group", bob, carol, title="t")
    socks = {u.username: await ready_socket(u) for u in (alice, bob, carol)}
    stranger_sock = await ready_socket(stranger)

    ack = await socks[alice.username].command("typing", chat_id=chat["id"], typing=True)
    assert ack["type"] == "ack"
    for name in (bob.username, carol.username):
        frame = await socks[name].until(lambda f: f["type"] == "typing")
        assert frame == {"type": "typing", "chat_id": chat["id"], "user": alice.username, "typing": True,
                         "expires_in": 6}
    await socks[bob.username].command("typing", chat_id=chat["id"], typing=False)
    frame = await socks[alice.username].until(lambda f: f["type"] == "typing")
    assert frame["user"] == bob.username and frame["typing"] is False and frame["expires_in"] == 6
    frame = await socks[carol.username].until(lambda f: f["type"] == "typing")
    assert frame["user"] == bob.username
    # the typists got no echo of their own typing; the stranger saw nothing
    for s in (*socks.values(), stranger_sock):
        await quiet(s)
    err = await stranger_sock.command("typing", chat_id=chat["id"], typing=True)
    assert err["type"] == "error" and err["error"]["code"] == "chat_not_found"
    await quiet(socks[bob.username])
    for s in (*socks.values(), stranger_sock):
        await s.close()


async def test_presence_follows_the_last_socket_and_only_reaches_chat_peers(live: Live) -> None:
    alice, bob, stranger = await live.user("alice"), await live.user("bob"), await live.user("x")
    await alice.call("POST", "/v1/chats/direct", 201, json={"username": bob.username})
    bob_sock = await ready_socket(bob)
    stranger_sock = await ready_socket(stranger)

    first = await ready_socket(alice)
    online = await bob_sock.until(lambda f: f["type"] == "presence")
    assert online == {"type": "presence", "user": alice.username, "online": True, "last_seen": None}
    (first_conn,) = server_conns(live, alice)
    second = await ready_socket(alice)  # a second device: already online, nothing to announce
    await quiet(bob_sock)
    assert len(server_conns(live, alice)) == 2

    await first.close()
    async with asyncio.timeout(10):
        await first_conn.finished.wait()  # the server has finished with that socket
    await quiet(bob_sock)  # still online: no presence frame
    await quiet(second)

    before = datetime.now(UTC)
    await second.close()
    offline = await bob_sock.until(lambda f: f["type"] == "presence")
    assert offline["user"] == alice.username and offline["online"] is False
    # the member list and the DM's peer say who is online now (a client that just opened needs it)
    chat_list = (await bob.call("GET", "/v1/chats", 200))["chats"]
    assert [c["peer"]["online"] for c in chat_list if c["kind"] == "direct"] == [False]
    members = (await bob.call("GET", f"/v1/chats/{chat_list[0]['id']}/members", 200))["members"]
    assert {m["user"]["username"]: m["user"]["online"] for m in members} == {alice.username: False,
                                                                             bob.username: True}
    last_seen = datetime.fromisoformat(offline["last_seen"])
    assert before - timedelta(seconds=5) <= last_seen <= datetime.now(UTC)
    # a stranger shares no chat with alice: no presence about her at any point
    await quiet(stranger_sock)
    # bob is told when alice comes back
    again = await ready_socket(alice)
    assert (await bob_sock.until(lambda f: f["type"] == "presence"))["online"] is True
    members = (await bob.call("GET", f"/v1/chats/{chat_list[0]['id']}/members", 200))["members"]
    assert all(m["user"]["online"] is True for m in members)
    assert (await alice.call("GET", "/v1/chats", 200))["chats"][0]["peer"]["online"] is True
    await quiet(stranger_sock)
    for s in (again, bob_sock, stranger_sock):
        await s.close()
