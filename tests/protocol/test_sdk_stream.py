"""The SDK's LiveStream against a live server: resume from a saved cursor, commands, reconnects."""

import asyncio
from pathlib import Path

import pytest

from melo_protocol.client import MeloClient, SessionRevoked
from melo_protocol.client.stream import CursorFile, LiveStream
from tests.kit.livekit import Live


async def sdk_client(live: Live, name: str) -> MeloClient:
    client = MeloClient(live.server.url)
    await client.login(name, "correct horse battery")
    return client


async def test_stream_resumes_from_saved_cursor_and_acks_commands(live: Live, tmp_path: Path) -> None:
    alice, bob = await live.user("alice"), await live.user("bob")
    chat = await alice.call("POST", "/v1/chats", 201,
                            json={"kind": "channel", "title": "sdk", "members": [bob.username]})
    bob_sdk = await sdk_client(live, bob.username)
    cursor_file = CursorFile(tmp_path / "cursor.json")
    async with LiveStream(bob_sdk, cursor_store=cursor_file):
        pass  # first run: starts from now, saves the position
    assert cursor_file.load() is not None
    for i in range(5):  # bob is offline
        await alice.call("POST", f"/v1/chats/{chat['id']}/messages", 201, json={"txn_id": f"o{i}", "text": f"m{i}"})
    async with LiveStream(bob_sdk, cursor_store=cursor_file) as stream:
        texts = [(await stream.next_frame(10))["data"]["text"] for _ in range(5)]
        assert texts == [f"m{i}" for i in range(5)]
        pong = await stream.command("ping")
        assert pong["type"] == "pong"
    alice_sdk = await sdk_client(live, alice.username)
    async with LiveStream(alice_sdk) as astream:
        ack = await astream.command("send", chat_id=chat["id"], txn_id="live1", text="hello live")
        assert ack["result"]["text"] == "hello live"
        with pytest.raises(Exception) as err:
            await astream.command("send", chat_id=999999, txn_id="x", text="nope")
        assert getattr(err.value, "code", None) == "chat_not_found"
    async with LiveStream(bob_sdk, cursor_store=cursor_file) as stream:
        frame = await stream.next_frame(10)
        assert frame["data"]["text"] == "hello live"  # exactly the one missed since last time
    await bob_sdk.aclose()
    await alice_sdk.aclose()


async def test_stream_reconnects_after_server_drop_and_ends_on_revocation(live: Live) -> None:
    alice, bob = await live.user("alice"), await live.user("bob")
    chat = await alice.call("POST", "/v1/chats", 201,
                            json={"kind": "channel", "title": "sdk2", "members": [bob.username]})
    bob_sdk = await sdk_client(live, bob.username)
    states: list[str] = []
    stream = LiveStream(bob_sdk, on_state=states.append)
    await stream.start()
    # the server drops every socket (as on a restart): the stream reconnects and resumes
    await live.server.state.hub.close_all(1012, "restart")
    await alice.call("POST", f"/v1/chats/{chat['id']}/messages", 201, json={"txn_id": "r1", "text": "after drop"})
    frame = await stream.next_frame(15)
    assert frame["data"]["text"] == "after drop"
    assert "reconnecting" in states
    # revoking the session ends the stream with SessionRevoked
    await bob_sdk.revoke_session(bob_sdk.credentials.session_id if bob_sdk.credentials else "")
    with pytest.raises(SessionRevoked):
        async with asyncio.timeout(5):
            while True:
                await stream.next_frame()
    await stream.close()
    await bob_sdk.aclose()
