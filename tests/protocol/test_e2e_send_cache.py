"""A one-shot sender (a `melo send` process) remembers whom it encrypts for: one request per send.

Each "process" here is a fresh MeloClient + Messenger on the same profile, started without the live
stream, as `melo send` does. The server checks the digest of the member devices a message was
encrypted for (``recipient_devices``); a stale memory is refused and the send re-encrypted, so a new
device can read at once and a removed member gets nothing.
"""

import secrets
from collections.abc import Callable
from pathlib import Path

import pytest

from melo_protocol.client import Conflict, CredentialStore, MeloClient
from melo_protocol.client.messenger import Messenger
from melo_protocol.crypto import MissingSessionKey
from melo_protocol.wire.keys import recipient_devices_digest
from tests.kit.e2ekit import PASSWORD, close_all, collect_texts, device
from tests.kit.livekit import Live
from tests.protocol.conftest import CountingTransport

SEND = "/v1/chats/{}/messages"


async def one_shot(live: Live, home: Path, profile: str, transport: CountingTransport | None = None) -> Messenger:
    """The profile's device as a fresh `melo send` process opens it: stored login, no stream."""
    store = CredentialStore(home, profile)
    m = Messenger.open(MeloClient(live.server.url, store=store, transport=transport), store)
    await m.start(live=False)
    return m


async def register_one_shot(live: Live, home: Path, username: str, profile: str) -> None:
    store = CredentialStore(home, profile)
    async with MeloClient(live.server.url, store=store) as client:
        await client.register(username, PASSWORD, device_name=profile)
    await close_all(await one_shot(live, home, profile))  # the device's keys are uploaded


async def send_once(live: Live, home: Path, profile: str, send: Callable[[Messenger], object]) -> list[str]:
    """Run one send in a fresh 'process'; the request paths it made."""
    transport = CountingTransport()
    m = await one_shot(live, home, profile, transport)
    try:
        await send(m)  # type: ignore[misc]
    finally:
        await close_all(m)
    return transport.paths


async def test_a_repeated_send_is_one_request_and_a_new_device_still_reads_it(live: Live, tmp_path: Path) -> None:
    tag = secrets.token_hex(3)  # one SQLite database serves the whole run: names must not repeat
    alice = f"alice{tag}"
    await register_one_shot(live, tmp_path, alice, "a1")
    bob = await device(live, tmp_path, f"bob{tag}", "b1", register=True)

    first = await send_once(live, tmp_path, "a1", lambda m: m.send_text_to(bob.username, "one"))
    assert len(first) > 1  # the first send looks everything up
    chat_id = (await bob.client.list_chats())[0].id
    for text in ("two", "three"):
        paths = await send_once(live, tmp_path, "a1", lambda m, t=text: m.send_text_to(bob.username, t))
        assert paths == [SEND.format(chat_id)]  # nothing changed: the send is the only request
    got = await collect_texts(bob, chat_id, 3)
    assert [(m.text, m.status) for m in got] == [("one", "ok"), ("two", "ok"), ("three", "ok")]

    # bob logs in on a second device: the remembered device list is stale, the server says so
    bob2 = await device(live, tmp_path, bob.username, "b2")
    paths = await send_once(live, tmp_path, "a1", lambda m: m.send_text_to(bob.username, "four"))
    assert paths[0] == paths[-1] == SEND.format(chat_id) and len(paths) > 2
    for m in (bob, bob2):
        (message,) = await collect_texts(m, chat_id, 1)
        assert (message.text, message.status) == ("four", "ok")
    paths = await send_once(live, tmp_path, "a1", lambda m: m.send_text_to(bob.username, "five"))
    assert paths == [SEND.format(chat_id)]
    await close_all(bob, bob2)


async def test_a_member_removed_behind_a_one_shot_senders_back_gets_no_key(live: Live, tmp_path: Path) -> None:
    tag = secrets.token_hex(3)
    await register_one_shot(live, tmp_path, f"alice{tag}", "a1")
    bob = await device(live, tmp_path, f"bob{tag}", "b1", register=True)
    carol = await device(live, tmp_path, f"carol{tag}", "c1", register=True)
    owner = await one_shot(live, tmp_path, "a1")
    chat = await owner.client.create_chat("group", "three", [bob.username, carol.username])
    await close_all(owner)
    await send_once(live, tmp_path, "a1", lambda m: m.send_text(chat.id, "for all three"))
    assert [m.text for m in await collect_texts(carol, chat.id, 1)] == ["for all three"]

    # carol is removed by another client of alice's: this device does not hear of it
    async with MeloClient(live.server.url, store=CredentialStore(tmp_path, "a1")) as other:
        await other.remove_member(chat.id, carol.username)
    await send_once(live, tmp_path, "a1", lambda m: m.send_text(chat.id, "after carol left"))
    assert [m.text for m in await collect_texts(bob, chat.id, 2)] == ["for all three", "after carol left"]
    page = await bob.client.history_raw(chat.id, limit=1)
    (late,) = page.messages
    with pytest.raises(MissingSessionKey):  # a new session, never shared with carol's device
        carol.crypto.decrypt_chat_message(chat.id, late.e2e or {}, late.id)
    await close_all(bob, carol)


async def test_the_server_refuses_a_stale_recipient_digest(live: Live, tmp_path: Path) -> None:
    tag = secrets.token_hex(3)
    await register_one_shot(live, tmp_path, f"alice{tag}", "a1")
    bob = await device(live, tmp_path, f"bob{tag}", "b1", register=True)
    m = await one_shot(live, tmp_path, "a1")
    chat = await m.client.create_direct(bob.username)
    envelope, digest = await m._encryptor.encrypt(chat.id, {"type": "m.text", "body": "x"}, checked=True)
    stale = recipient_devices_digest([(bob.user_id, bob.device_id, "not-the-key")])
    with pytest.raises(Conflict) as refused:
        await m.client.send_raw(chat.id, "txn-stale", e2e=envelope, recipient_devices=stale)
    assert refused.value.code == "recipients_changed" and refused.value.details == {"chat_id": chat.id}
    sent = await m.client.send_raw(chat.id, "txn-stale", e2e=envelope, recipient_devices=digest)
    assert sent.chat_id == chat.id  # the same transaction id, refused before, is unspent
    await close_all(m, bob)
