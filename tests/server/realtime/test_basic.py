"""Chats and messages over REST and the live WebSocket."""

from tests.kit.livekit import Live


async def test_channel_post_reaches_member_socket(live: Live) -> None:
    alice, bob = await live.user("alice"), await live.user("bob")
    chat = await alice.call("POST", "/v1/chats", 201,
                            json={"kind": "channel", "title": "news", "members": [bob.username]})
    sock = await bob.socket(cursor={})
    caught = await sock.until(lambda f: f["type"] == "caught_up")
    assert str(chat["id"]) in caught["cursor"]
    msg = await alice.call("POST", f"/v1/chats/{chat['id']}/messages", 201, json={"txn_id": "t1", "text": "hello"})
    frame = await sock.until(lambda f: f["type"] == "message.created")
    assert frame["data"]["text"] == "hello"
    assert frame["data"]["id"] == msg["id"]
    assert frame["seq"] == msg["seq"]
    await sock.close()
