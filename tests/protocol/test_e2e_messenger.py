"""End-to-end encryption through the SDK against the live server."""

import asyncio
import secrets
from pathlib import Path
from typing import Any

import pytest

from melo_protocol.client import events as ev
from melo_protocol.crypto import MissingSessionKey
from melo_protocol.wire.chats import HISTORY_MAX_LIMIT
from tests.kit.e2ekit import close_all, collect_texts, device, next_of
from tests.kit.livekit import Live


async def test_dm_round_trip_is_encrypted(live: Live, tmp_path: Path) -> None:
    alice = await device(live, tmp_path, "alice" + tmp_path.name[-6:].replace("_", ""), "a1", register=True)
    bob = await device(live, tmp_path, "bob" + tmp_path.name[-6:].replace("_", ""), "b1", register=True)
    chat = await alice.client.create_direct(bob.username)
    assert chat.e2e
    sent = await alice.send_text(chat.id, "hello bob, this is secret")
    got = await collect_texts(bob, chat.id, 1)
    assert got[0].text == "hello bob, this is secret" and got[0].status == "ok"
    assert got[0].sender == alice.username and got[0].id == sent.id
    await bob.send_text(chat.id, "hi alice")
    back = await collect_texts(alice, chat.id, 2)  # her own message echoes too
    assert [m.text for m in back] == ["hello bob, this is secret", "hi alice"]
    history = await bob.history(chat.id)
    assert [m.text for m in history] == ["hello bob, this is secret", "hi alice"]
    await close_all(alice, bob)


async def test_multi_device_group_with_membership_change(live: Live, tmp_path: Path) -> None:
    """alice (2 devices), bob (2 devices) and carol in one group; 200 messages; carol removed at 100."""
    tag = tmp_path.name[-5:].replace("_", "")
    a1 = await device(live, tmp_path, f"alice{tag}", "a1", register=True)
    a2 = await device(live, tmp_path, f"alice{tag}", "a2")
    b1 = await device(live, tmp_path, f"bob{tag}", "b1", register=True)
    b2 = await device(live, tmp_path, f"bob{tag}", "b2")
    c1 = await device(live, tmp_path, f"carol{tag}", "c1", register=True)
    everyone = {"a1": a1, "a2": a2, "b1": b1, "b2": b2, "c1": c1}
    chat = await a1.client.create_chat("group", "five devices", [b1.username, c1.username])
    received: dict[str, dict[int, ev.Message]] = {k: {} for k in everyone}
    expected: dict[str, dict[int, str]] = {k: {} for k in everyone}
    complete = {k: asyncio.Event() for k in everyone}
    sending_done = asyncio.Event()

    def check(name: str) -> None:
        ok = {mid: m.text for mid, m in received[name].items() if m.status == "ok"}
        if sending_done.is_set() and ok == expected[name]:
            complete[name].set()

    async def consume(name: str) -> None:
        async for event in everyone[name].events():
            if isinstance(event, ev.MessageReceived | ev.MessageEdited) and event.message and event.chat_id == chat.id:
                received[name][event.message.id] = event.message
                check(name)

    consumers = [asyncio.create_task(consume(k)) for k in everyone]
    senders = ["a1", "a2", "b1", "b2", "c1"]
    sent: list[tuple[int, str]] = []
    for i in range(200):
        if i == 100:
            await a1.client.remove_member(chat.id, c1.username)
            senders = ["a1", "a2", "b1", "b2"]
        who = senders[i % len(senders)]
        text = f"message {i} from {who}"
        msg = await everyone[who].send_text(chat.id, text)
        sent.append((msg.id, text))
        for name in everyone:
            if name != "c1" or i < 100:
                expected[name][msg.id] = text
    sending_done.set()
    for name in everyone:
        check(name)
    async with asyncio.timeout(90):
        await asyncio.gather(*(e.wait() for e in complete.values()))
    for task in consumers:
        task.cancel()
    for name in everyone:  # every message on every current member device, the sender's own included
        assert {mid: m.text for mid, m in received[name].items()} == expected[name], name
        assert not [m for m in received[name].values() if m.status != "ok"], name
    # a removed member's device holds no key for what was sent after its removal
    late = await b1.client.history_raw(chat.id, limit=10)
    for out in late.messages:
        with pytest.raises(MissingSessionKey):
            c1.crypto.decrypt_chat_message(chat.id, out.e2e or {}, out.id)
    await close_all(*everyone.values())


async def test_server_never_sees_e2e_plaintext(live_backends: Live, tmp_path: Path) -> None:
    """After an E2E conversation, no table row and no Redis key or value holds any of the plaintexts."""
    from redis.asyncio import Redis
    from sqlalchemy import inspect, text

    live = live_backends
    tag = tmp_path.name[-5:].replace("_", "")
    alice = await device(live, tmp_path, f"alice{tag}", "a1", register=True)
    bob = await device(live, tmp_path, f"bob{tag}", "b1", register=True)
    dm = await alice.client.create_direct(bob.username)
    group = await alice.client.create_chat("group", "blind", [bob.username])
    secrets = [f"plaintext-{tag}-{i}-zebra" for i in range(6)]
    for i, secret in enumerate(secrets):
        sender = alice if i % 2 == 0 else bob
        msg = await sender.send_text(dm.id if i < 3 else group.id, secret)
        if i == 1:
            await sender.edit_text(dm.id, msg.id, secret + "-edited")
    got = await collect_texts(bob, dm.id, 3)
    assert [m.text for m in got] == [secrets[0], secrets[1], secrets[2]]
    needles = [s.encode() for s in secrets]
    state = live.server.state
    async with state.engine.connect() as conn:
        tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
        assert "messages" in tables and "to_device" in tables
        for table in tables:
            for row in (await conn.execute(text(f"SELECT * FROM {table}"))).all():
                blob = repr(tuple(row)).encode()
                assert not [n for n in needles if n in blob], f"plaintext found in table {table}"
    if state.settings.redis_url:
        redis = Redis.from_url(state.settings.redis_url)
        try:
            async for key in redis.scan_iter(match="*", count=1000):
                kind = await redis.type(key)
                value = b""
                if kind == b"string":
                    value = await redis.get(key) or b""
                elif kind == b"zset":
                    value = repr(await redis.zrange(key, 0, -1)).encode()
                elif kind == b"hash":
                    value = repr(await redis.hgetall(key)).encode()
                assert not [n for n in needles if n in key or n in value], f"plaintext in redis key {key!r}"
        finally:
            await redis.aclose()
    await close_all(alice, bob)


async def test_live_sas_verification_between_two_devices(live: Live, tmp_path: Path) -> None:
    tag = tmp_path.name[-5:].replace("_", "")
    alice = await device(live, tmp_path, f"alice{tag}", "a1", register=True)
    bob = await device(live, tmp_path, f"bob{tag}", "b1", register=True)
    await alice.client.create_direct(bob.username)
    bob_devices = await alice.devices(bob.username)
    await bob.devices(alice.username)  # bob knows alice's device (TOFU) before her start arrives
    sas_a = await alice.start_sas(bob.username, bob_devices[0]["device_id"])
    start = await next_of(bob, ev.VerificationUpdate)
    txn = start.data["transaction_id"]
    assert txn == sas_a.transaction_id
    sas_b = await bob.accept_sas(txn)
    # both apps process their streams at once, as running clients do: the key exchange needs both
    await asyncio.gather(next_of(alice, ev.VerificationUpdate, lambda e: e.state == "keys_exchanged"),
                         next_of(bob, ev.VerificationUpdate, lambda e: e.state == "keys_exchanged"))
    assert sas_a.emoji() == sas_b.emoji() and sas_a.decimals() == sas_b.decimals()
    await alice.confirm_sas(txn, match=True)
    await bob.confirm_sas(txn, match=True)
    await asyncio.gather(next_of(alice, ev.VerificationUpdate, lambda e: e.state == "verified"),
                         next_of(bob, ev.VerificationUpdate, lambda e: e.state == "verified"))
    assert [d["trust"] for d in await alice.devices(bob.username)] == ["verified"]
    assert [d["trust"] for d in await bob.devices(alice.username)] == ["verified"]
    digits_a, qr = await alice.safety_number(bob.username)
    digits_b, _ = await bob.safety_number(alice.username)
    assert digits_a == digits_b and len(digits_a.split()) == 12
    assert any(block in qr for block in "▀▄█")
    await close_all(alice, bob)


async def test_local_message_cache_is_sealed_and_serves_history(live: Live, tmp_path: Path) -> None:
    tag = tmp_path.name[-5:].replace("_", "")
    alice = await device(live, tmp_path, f"alice{tag}", "a1", register=True)
    bob = await device(live, tmp_path, f"bob{tag}", "b1", register=True)
    chat = await alice.client.create_direct(bob.username)
    for text in ("cached one", "cached two"):
        await alice.send_text(chat.id, text)
    assert [m.text for m in await collect_texts(bob, chat.id, 2)] == ["cached one", "cached two"]
    assert [m.text for m in bob.cached_history(chat.id)] == ["cached one", "cached two"]
    cache_file = bob.data_dir / "cache.sqlite3"
    await close_all(bob)
    assert b"cached one" not in cache_file.read_bytes()
    assert oct(cache_file.stat().st_mode & 0o777) == "0o600"
    # the same device again, from its stored credentials: its cache reads back without the network
    from melo_protocol.client import CredentialStore, MeloClient
    from melo_protocol.client.messenger import Messenger

    store = CredentialStore(tmp_path, "b1")
    bob2 = Messenger.open(MeloClient(store=store), store)
    await bob2.start(live=False)
    assert [m.text for m in bob2.cached_history(chat.id)] == ["cached one", "cached two"]
    await close_all(bob2)
    # a deleted (or expired) message leaves this device's cache as it arrives
    bob3 = Messenger.open(MeloClient(store=store), store)  # the same device, live this time
    await bob3.start()
    first = (await bob3.history(chat.id))[0]
    assert [m.text for m in bob3.cached_history(chat.id)] == ["cached one", "cached two"]
    await alice.delete(chat.id, first.id)
    gone = await next_of(bob3, ev.MessageDeleted, lambda e: e.message_id == first.id)
    assert gone.chat_id == chat.id
    assert [m.text for m in bob3.cached_history(chat.id)] == ["cached two"]
    await close_all(alice, bob3)


async def test_new_device_of_a_contact_is_flagged(live: Live, tmp_path: Path) -> None:
    tag = tmp_path.name[-5:].replace("_", "")
    alice = await device(live, tmp_path, f"alice{tag}", "a1", register=True)
    bob = await device(live, tmp_path, f"bob{tag}", "b1", register=True)
    chat = await alice.client.create_direct(bob.username)
    await alice.send_text(chat.id, "first")  # alice learns bob's one device
    bob2 = await device(live, tmp_path, bob.username, "b2")  # bob logs in elsewhere
    warning = await next_of(alice, ev.KeyWarning)  # devices.changed reaches alice; her next look flags it
    assert warning.user == bob.username and warning.reason == "new_unverified_device"
    assert warning.device_id == bob2.device_id
    await close_all(alice, bob, bob2)


async def test_missing_room_key_is_re_requested_and_the_message_fills_in(live: Live, tmp_path: Path) -> None:
    """A room key lost on the way shows the message as waiting for key; the key is re-requested from the
    sender's device, re-shared (the requester is still a member) and the message is decrypted."""
    from sqlalchemy import delete

    from server.db.models import ToDeviceMessage

    tag = tmp_path.name[-5:].replace("_", "")
    alice = await device(live, tmp_path, f"alice{tag}", "a1", register=True)
    bob = await device(live, tmp_path, f"bob{tag}", "b1", register=True)
    chat = await alice.client.create_direct(bob.username)
    real_publish = live.server.state.bus.publish

    async def drop_room_keys(event: Any) -> None:  # the to-device delivery of the room key is lost
        if event.kind != "device":
            await real_publish(event)

    live.server.state.bus.publish = drop_room_keys
    await alice.send_text(chat.id, "the key for this went missing")
    live.server.state.bus.publish = real_publish
    async with live.server.state.sessions() as db:
        await db.execute(delete(ToDeviceMessage).where(ToDeviceMessage.recipient_device == bob.device_id))
        await db.commit()

    async def alice_runs() -> None:  # a running client: processes its stream, so it answers key requests
        async for _ in alice.events():
            pass

    alice_listens = asyncio.create_task(alice_runs())
    first = await next_of(bob, ev.MessageReceived)
    assert first.message is not None and first.message.status == "waiting_for_key" and first.message.text is None
    filled = await next_of(bob, ev.MessageEdited, lambda e: e.message is not None and e.message.id == first.message.id)
    assert filled.message.status == "ok" and filled.message.text == "the key for this went missing"
    alice_listens.cancel()
    await close_all(alice, bob)


async def test_delivered_then_read_receipts_and_decrypted_pins(live: Live, tmp_path: Path) -> None:
    """A device that receives a message says so (✓✓ delivered) before its user reads it (read)."""
    alice = await device(live, tmp_path, "alice" + tmp_path.name[-6:].replace("_", ""), "a1", register=True)
    bob = await device(live, tmp_path, "bob" + tmp_path.name[-6:].replace("_", ""), "b1", register=True)
    chat = await alice.client.create_direct(bob.username)
    sent = await alice.send_text(chat.id, "did this arrive?")
    await collect_texts(bob, chat.id, 1)  # bob's device has it: a delivered receipt goes out by itself
    delivered = await next_of(alice, ev.ReceiptUpdated, lambda e: e.user == bob.username)
    assert delivered.delivered_seq >= sent.seq and delivered.read_seq < sent.seq
    await bob.mark_read(chat.id, sent.seq)
    read = await next_of(alice, ev.ReceiptUpdated, lambda e: e.user == bob.username and e.read_seq >= sent.seq)
    assert read.delivered_seq >= sent.seq
    members = {m.user.username: m for m in await alice.client.list_members(chat.id)}
    assert members[bob.username].delivered_seq >= sent.seq
    assert members[alice.username].delivered_seq >= 0
    await alice.pin(chat.id, sent.id)
    pins = await bob.pins(chat.id)
    assert [(p.id, p.text, p.status) for p in pins] == [(sent.id, "did this arrive?", "ok")]
    await close_all(alice, bob)


async def test_retention_purge_leaves_the_local_cache_too(live: Live, tmp_path: Path) -> None:
    """The server's retention removed the oldest messages: the device drops its decrypted copies as soon as
    it sees the chat's purged_seq (history or chat details), so "forget" holds on every device."""
    from datetime import timedelta

    from sqlalchemy import update

    from server.db.models import ChatEvent
    from server.db.types import utcnow
    from server.jobs.tasks import purge_chat

    tag = tmp_path.name[-5:].replace("_", "")
    alice = await device(live, tmp_path, f"alice{tag}", "a1", register=True)
    bob = await device(live, tmp_path, f"bob{tag}", "b1", register=True)
    chat = await alice.client.create_direct(bob.username)
    sent = [await alice.send_text(chat.id, text) for text in ("old one", "old two", "recent")]
    assert [m.text for m in await collect_texts(bob, chat.id, 3)] == ["old one", "old two", "recent"]
    assert [m.text for m in bob.cached_history(chat.id)] == ["old one", "old two", "recent"]
    assert [m.text for m in await collect_texts(alice, chat.id, 3)] == ["old one", "old two", "recent"]
    assert [m.text for m in alice.cached_history(chat.id)] == ["old one", "old two", "recent"]
    state = live.server.app.state.melo
    async with state.sessions() as db:  # the first two are ten days old; the chat keeps seven
        await db.execute(update(ChatEvent).where(ChatEvent.chat_id == chat.id, ChatEvent.seq <= sent[1].seq)
                         .values(created_at=utcnow() - timedelta(days=10)))
        await db.commit()
    assert await purge_chat(state, chat.id, utcnow() - timedelta(days=7)) == 2
    assert (await bob.chat(chat.id, refresh=True)).purged_seq >= sent[1].seq
    assert [m.text for m in bob.cached_history(chat.id)] == ["recent"]
    # a device that learns of it from a history page forgets just the same
    assert [m.text for m in await alice.history(chat.id)] == ["recent"]
    assert [m.text for m in alice.cached_history(chat.id)] == ["recent"]
    await close_all(alice, bob)


async def test_history_past_one_page_is_fetched_page_by_page(live: Live, tmp_path: Path) -> None:
    """`melo history --limit 500` asks for more than the server's page (HISTORY_MAX_LIMIT): the SDK pages."""
    alice = await device(live, tmp_path, f"alice{tmp_path.name[-5:].replace('_', '')}", "a1", register=True)
    chat = await alice.client.create_chat("channel", f"pages-{secrets.token_hex(3)}")
    for i in range(HISTORY_MAX_LIMIT + 50):
        await alice.client.send_raw(chat.id, f"t{i}", text=f"n{i}")
    got = await alice.history(chat.id, limit=HISTORY_MAX_LIMIT + 30)
    assert [m.text for m in got] == [f"n{i}" for i in range(20, HISTORY_MAX_LIMIT + 50)]  # the latest, oldest first
    everything = await alice.history(chat.id, limit=10_000)
    assert [m.text for m in everything] == [f"n{i}" for i in range(HISTORY_MAX_LIMIT + 50)]
    await close_all(alice)
