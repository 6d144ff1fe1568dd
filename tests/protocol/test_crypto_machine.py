"""CryptoMachine end to end, in process: devices exchange keys and messages through a plain dict "server"."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from melo_protocol.crypto import (
    CryptoMachine,
    DecryptionError,
    IdentityChanged,
    InvalidDeviceKeys,
    MissingSessionKey,
    ReplayedMessage,
    RoomKeyReceived,
    RotationPolicy,
    SqliteCryptoStore,
    TrustState,
    UndecryptableToDevice,
)
from melo_protocol.crypto.signing import MEGOLM_ALGORITHM
from melo_protocol.wire.chats import E2EEnvelope

KEY = bytes(range(32))


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class Server:
    """What the real server does for E2E, as dicts: key directory, one-time key claims, to-device queues."""

    def __init__(self) -> None:
        self.device_keys: dict[int, dict[str, dict[str, Any]]] = {}
        self.one_time_keys: dict[tuple[int, str], dict[str, dict[str, Any]]] = {}
        self.fallback: dict[tuple[int, str], dict[str, dict[str, Any]]] = {}
        self.inbox: dict[tuple[int, str], list[dict[str, Any]]] = {}
        self.messages: dict[int, list[tuple[str, dict[str, Any]]]] = {}
        self.members: dict[int, set[int]] = {}
        self.machines: list[CryptoMachine] = []
        self._ids = itertools.count(1)

    def upload(self, machine: CryptoMachine) -> None:
        me = (machine.user_id, machine.device_id)
        body = machine.keys_for_upload(len(self.one_time_keys.get(me, {})), fallback_unused=me in self.fallback)
        if body is None:
            return
        if "device_keys" in body:
            self.device_keys.setdefault(machine.user_id, {})[machine.device_id] = body["device_keys"]
            self.one_time_keys[me] = {}  # a (re-)registered device: keys of an earlier account are void
            self.fallback.pop(me, None)
        self.one_time_keys.setdefault(me, {}).update(body.get("one_time_keys", {}))
        if "fallback_key" in body:
            self.fallback[me] = body["fallback_key"]
        machine.mark_keys_uploaded()

    def query(self, user_ids: set[int]) -> dict[int, list[dict[str, Any]]]:
        return {u: list(self.device_keys.get(u, {}).values()) for u in sorted(user_ids)}

    def claim(self, needed: dict[int, list[str]]) -> dict[int, dict[str, dict[str, Any]]]:
        claimed: dict[int, dict[str, dict[str, Any]]] = {}
        for user_id, device_ids in needed.items():
            for device_id in device_ids:
                keys = self.one_time_keys.get((user_id, device_id), {})
                if keys:
                    key_id = sorted(keys)[0]
                    claimed.setdefault(user_id, {})[device_id] = {key_id: keys.pop(key_id)}
                elif (user_id, device_id) in self.fallback:
                    claimed.setdefault(user_id, {})[device_id] = dict(self.fallback[(user_id, device_id)])
        return claimed

    def send_to_device(self, sender: CryptoMachine, messages: list[Any]) -> None:
        for m in messages:
            self.inbox.setdefault((m.user_id, m.device_id), []).append(
                {
                    "id": next(self._ids),
                    "type": m.type,
                    "sender_id": sender.user_id,
                    "sender_device": sender.device_id,
                    "content": m.content,
                }
            )

    def sync(self, machine: CryptoMachine) -> list[Any]:
        return machine.receive_to_device(self.inbox.pop((machine.user_id, machine.device_id), []))

    def send(self, machine: CryptoMachine, chat_id: int, plaintext: dict[str, Any]) -> str:
        members = self.query(self.members[chat_id])
        self.upload(machine)
        needed = machine.devices_needing_olm_sessions(members)
        assert machine.add_claimed_keys(self.claim(needed)) == []
        envelope, to_device = machine.encrypt_for_chat(chat_id, plaintext, members)
        E2EEnvelope.model_validate(envelope)  # the server's own model accepts it
        self.send_to_device(machine, to_device)
        message_id = f"m{next(self._ids)}"
        self.messages.setdefault(chat_id, []).append((message_id, envelope))
        return message_id


def new_device(
    tmp_path: Path,
    server: Server,
    user_id: int,
    device_id: str,
    clock: Clock | None = None,
    rotation: RotationPolicy | None = None,
) -> CryptoMachine:
    store = SqliteCryptoStore(tmp_path / f"{user_id}-{device_id}", KEY)
    machine = CryptoMachine.open(store, user_id, device_id, clock=clock or Clock(), rotation=rotation)
    server.machines.append(machine)
    server.upload(machine)
    return machine


@pytest.fixture
def server() -> Iterator[Server]:
    server = Server()
    yield server
    for machine in server.machines:
        machine.close()


def test_multi_device_group_with_removal(tmp_path: Path, server: Server) -> None:
    alice = [new_device(tmp_path, server, 1, "A1"), new_device(tmp_path, server, 1, "A2")]
    bob = [new_device(tmp_path, server, 2, "B1"), new_device(tmp_path, server, 2, "B2")]
    carol = [new_device(tmp_path, server, 3, "C1")]
    chat = 7
    server.members[chat] = {1, 2, 3}
    rng = random.Random(7)
    undecryptable = 0
    carol_read_after_removal = 0
    sent: list[tuple[str, CryptoMachine, dict[str, Any], bool]] = []
    for n in range(200):
        if n == 100:
            server.members[chat] = {1, 2}
            for device in alice + bob:
                device.on_membership_changed(chat)
        current = alice + bob + (carol if n < 100 else [])
        sender = rng.choice(current)
        plaintext = {"body": f"message {n} from {sender.device_id} ✓", "n": n}
        message_id = server.send(sender, chat, plaintext)
        sent.append((message_id, sender, plaintext, n >= 100))
        envelope = server.messages[chat][-1][1]
        for device in current:
            if device is sender:
                continue
            server.sync(device)
            try:
                got = device.decrypt_chat_message(chat, envelope, message_id)
            except DecryptionError:
                undecryptable += 1
                continue
            assert got.content == plaintext
            assert (got.sender_user_id, got.sender_device_id) == (sender.user_id, sender.device_id)
        if n >= 100:
            server.sync(carol[0])
            try:
                carol[0].decrypt_chat_message(chat, envelope, message_id)
                carol_read_after_removal += 1
            except MissingSessionKey:
                pass
    assert undecryptable == 0
    assert carol_read_after_removal == 0
    # the sender's own copy decrypts its own messages too (history after a reload)
    message_id, sender, plaintext, _ = sent[-1]
    assert sender.decrypt_chat_message(chat, server.messages[chat][-1][1], message_id).content == plaintext
    # every device saw only well-formed to-device traffic
    for device in alice + bob + carol:
        assert not [e for e in device.pop_events() if isinstance(e, UndecryptableToDevice | InvalidDeviceKeys)]


def test_removed_device_is_cut_off_even_without_explicit_membership_call(tmp_path: Path, server: Server) -> None:
    alice, bob, carol = (new_device(tmp_path, server, u, f"D{u}") for u in (1, 2, 3))
    server.members[1] = {1, 2, 3}
    first = server.send(alice, 1, {"body": "all three"})
    server.sync(carol)
    assert carol.decrypt_chat_message(1, server.messages[1][-1][1], first).content == {"body": "all three"}
    server.members[1] = {1, 2}  # no on_membership_changed call: the shrunk device list alone forces rotation
    later = server.send(alice, 1, {"body": "without carol"})
    envelope = server.messages[1][-1][1]
    assert envelope["session_id"] != server.messages[1][0][1]["session_id"]
    server.sync(carol)
    with pytest.raises(MissingSessionKey) as info:
        carol.decrypt_chat_message(1, envelope, later)
    assert info.value.session_id == envelope["session_id"]
    assert info.value.sender_key == alice.identity_keys["curve25519"]
    server.sync(bob)
    assert bob.decrypt_chat_message(1, envelope, later).content == {"body": "without carol"}


def test_late_joiner_cannot_read_earlier_messages(tmp_path: Path, server: Server) -> None:
    alice, bob, dave = (new_device(tmp_path, server, u, f"D{u}") for u in (1, 2, 4))
    server.members[1] = {1, 2}
    before = [server.send(alice, 1, {"n": i}) for i in range(3)]
    server.members[1] = {1, 2, 4}  # a join keeps the session (no on_membership_changed): dave gets it from now
    after = server.send(alice, 1, {"n": 3})
    server.sync(dave)
    envelopes = dict(server.messages[1])
    assert len({e["session_id"] for e in envelopes.values()}) == 1
    for message_id in before:
        with pytest.raises(DecryptionError):
            dave.decrypt_chat_message(1, envelopes[message_id], message_id)
    assert dave.decrypt_chat_message(1, envelopes[after], after).content == {"n": 3}
    server.sync(bob)
    assert [bob.decrypt_chat_message(1, envelopes[m], m).content["n"] for m in [*before, after]] == [0, 1, 2, 3]


def test_missing_key_then_key_arrives(tmp_path: Path, server: Server) -> None:
    alice, bob = (new_device(tmp_path, server, u, f"D{u}") for u in (1, 2))
    server.members[5] = {1, 2}
    message_id = server.send(alice, 5, {"body": "hi"})
    envelope = server.messages[5][-1][1]
    with pytest.raises(MissingSessionKey):
        bob.decrypt_chat_message(5, envelope, message_id)
    assert server.sync(bob) == []  # room keys are consumed, not returned
    events = bob.pop_events()
    assert [type(e) for e in events] == [RoomKeyReceived]
    assert events[0].chat_id == 5 and events[0].session_id == envelope["session_id"]
    got = bob.decrypt_chat_message(5, envelope, message_id)
    assert got.content == {"body": "hi"} and got.message_index == 0
    assert got.trust is None  # bob has not fetched alice's devices yet
    bob.track_devices(server.query({1}))
    assert bob.decrypt_chat_message(5, envelope, message_id).trust is TrustState.UNVERIFIED
    bob.set_trust(1, "D1", TrustState.VERIFIED)
    assert bob.decrypt_chat_message(5, envelope, message_id).trust is TrustState.VERIFIED


def test_replay_and_cross_chat_replay_rejected(tmp_path: Path, server: Server) -> None:
    alice, bob = (new_device(tmp_path, server, u, f"D{u}") for u in (1, 2))
    server.members[1] = {1, 2}
    server.members[2] = {1, 2}
    message_id = server.send(alice, 1, {"body": "once"})
    envelope = server.messages[1][-1][1]
    server.sync(bob)
    assert bob.decrypt_chat_message(1, envelope, message_id).content == {"body": "once"}
    assert bob.decrypt_chat_message(1, envelope, message_id).content == {"body": "once"}  # same id: a re-read
    with pytest.raises(ReplayedMessage) as info:
        bob.decrypt_chat_message(1, envelope, "another-id")
    assert info.value.first_message_id == message_id and info.value.message_index == 0
    with pytest.raises(DecryptionError):
        bob.decrypt_chat_message(2, envelope, "in-another-chat")


def test_rotation_after_message_budget_and_age(tmp_path: Path, server: Server) -> None:
    clock = Clock()
    alice = new_device(tmp_path, server, 1, "A", clock, RotationPolicy(max_messages=3, max_age_seconds=60))
    bob = new_device(tmp_path, server, 2, "B")
    server.members[1] = {1, 2}
    for i in range(7):
        server.send(alice, 1, {"n": i})
    sessions = [e["session_id"] for _, e in server.messages[1]]
    assert sessions[0] == sessions[1] == sessions[2] != sessions[3]
    assert sessions[3] == sessions[5] != sessions[6]
    clock.now += 61
    server.send(alice, 1, {"n": 7})
    assert server.messages[1][-1][1]["session_id"] != sessions[6]
    server.sync(bob)
    got = [bob.decrypt_chat_message(1, envelope, mid).content["n"] for mid, envelope in server.messages[1]]
    assert got == list(range(8))


def test_identity_change_is_reported_and_not_shared_with(tmp_path: Path, server: Server) -> None:
    alice, bob = (new_device(tmp_path, server, u, f"D{u}") for u in (1, 2))
    server.members[1] = {1, 2}
    server.send(alice, 1, {"n": 0})
    # bob's device id is re-registered with a new account (or a malicious server swaps keys)
    impostor = new_device(tmp_path / "other", server, 2, "D2")
    assert server.device_keys[2]["D2"]["keys"]["curve25519:D2"] == impostor.identity_keys["curve25519"]
    alice.on_membership_changed(1)
    server.send(alice, 1, {"n": 1})
    events = [e for e in alice.pop_events() if isinstance(e, IdentityChanged)]
    assert len(events) == 1
    assert events[0].old_curve25519 == bob.identity_keys["curve25519"]
    assert events[0].new_curve25519 == impostor.identity_keys["curve25519"]
    server.sync(impostor)
    with pytest.raises(MissingSessionKey):
        impostor.decrypt_chat_message(1, server.messages[1][-1][1], server.messages[1][-1][0])
    record = alice.device(2, "D2")
    assert record is not None and record.identity_changed
    assert record.curve25519 == bob.identity_keys["curve25519"]  # first-seen key kept until accepted
    # reported once, not on every send
    server.send(alice, 1, {"n": 2})
    assert not [e for e in alice.pop_events() if isinstance(e, IdentityChanged)]
    alice.accept_identity_change(2, "D2")
    message_id = server.send(alice, 1, {"n": 3})
    server.sync(impostor)
    assert impostor.decrypt_chat_message(1, server.messages[1][-1][1], message_id).content == {"n": 3}


def test_blocked_device_gets_nothing_and_bad_device_keys_are_ignored(tmp_path: Path, server: Server) -> None:
    alice, bob = (new_device(tmp_path, server, u, f"D{u}") for u in (1, 2))
    server.members[1] = {1, 2}
    alice.track_devices(server.query({2}))
    alice.set_trust(2, "D2", TrustState.BLOCKED)
    message_id = server.send(alice, 1, {"n": 0})
    server.sync(bob)
    with pytest.raises(MissingSessionKey):
        bob.decrypt_chat_message(1, server.messages[1][-1][1], message_id)
    forged = dict(server.device_keys[2]["D2"], device_id="D9")
    assert alice.track_devices({2: [forged]}) == []
    assert InvalidDeviceKeys(2, "D9") in alice.pop_events()


def test_keys_for_upload_tops_up_and_publishes_device_keys_once(tmp_path: Path) -> None:
    machine = CryptoMachine.open(SqliteCryptoStore(tmp_path, KEY), 1, "DEV")
    body = machine.keys_for_upload(0)
    assert body is not None
    assert set(body) == {"device_keys", "one_time_keys", "fallback_key"}
    assert len(body["one_time_keys"]) == machine.account.max_one_time_keys // 2
    machine.mark_keys_uploaded()
    assert machine.keys_for_upload(25, fallback_unused=True) is None
    body = machine.keys_for_upload(20, fallback_unused=True)
    assert body is not None and set(body) == {"one_time_keys"} and len(body["one_time_keys"]) == 5
    # a restart before mark_keys_uploaded still has the private halves of what was handed out
    machine.store.close()
    reopened = CryptoMachine.open(SqliteCryptoStore(tmp_path, KEY), 1, "DEV")
    assert reopened.account.one_time_keys() == body["one_time_keys"]
    reopened.close()


def test_forged_to_device_becomes_an_event_not_an_exception(tmp_path: Path, server: Server) -> None:
    alice, bob = (new_device(tmp_path, server, u, f"D{u}") for u in (1, 2))
    server.members[1] = {1, 2}
    server.send(alice, 1, {"n": 0})
    event = server.inbox[(2, "D2")][0]
    event["sender_id"] = 3  # the server lies about the sender
    assert server.sync(bob) == []
    events = bob.pop_events()
    assert len(events) == 1 and isinstance(events[0], UndecryptableToDevice) and events[0].sender_user_id == 3
    assert bob.receive_to_device([{"sender_id": 1, "content": {"algorithm": "nope"}}]) == []
    assert isinstance(bob.pop_events()[0], UndecryptableToDevice)


def test_to_device_payloads_and_reshare(tmp_path: Path, server: Server) -> None:
    alice, _bob, dave = (new_device(tmp_path, server, u, f"D{u}") for u in (1, 2, 4))
    server.members[1] = {1, 2}
    ids = [server.send(alice, 1, {"n": i}) for i in range(4)]
    # dave joins later and alice re-shares from index 2 on (e.g. history the chat admits him to)
    alice.add_claimed_keys(server.claim(alice.devices_needing_olm_sessions(server.query({4}))))
    session_id = server.messages[1][0][1]["session_id"]
    server.send_to_device(alice, [alice.reshare_room_key(session_id, 4, "D4", 2)])
    server.send_to_device(alice, [alice.encrypt_to_device(4, "D4", "m.call.invite", {"sdp": "v=0"})])
    payloads = server.sync(dave)
    assert [(p.type, p.content, p.sender_user_id, p.sender_device_known) for p in payloads] == [
        ("m.call.invite", {"sdp": "v=0"}, 1, False)
    ]
    envelopes = dict(server.messages[1])
    with pytest.raises(DecryptionError):
        dave.decrypt_chat_message(1, envelopes[ids[1]], ids[1])
    assert dave.decrypt_chat_message(1, envelopes[ids[2]], ids[2]).content == {"n": 2}
    assert envelopes[ids[2]]["algorithm"] == MEGOLM_ALGORITHM


@pytest.fixture(scope="module")
def chat_history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CryptoMachine, list[tuple[str, Any]]]]:
    server = Server()
    directory = tmp_path_factory.mktemp("replay")
    alice, bob = (new_device(directory, server, u, f"D{u}") for u in (1, 2))
    server.members[1] = {1, 2}
    for i in range(20):
        server.send(alice, 1, {"n": i})
    server.sync(bob)
    for message_id, envelope in server.messages[1]:
        bob.decrypt_chat_message(1, envelope, message_id)
    yield bob, server.messages[1]
    for machine in server.machines:
        machine.close()


@settings(max_examples=50, deadline=None)
@given(pick=st.integers(min_value=0, max_value=19), new_id=st.text(min_size=1, max_size=10))
def test_any_replay_under_another_id_is_rejected(
    chat_history: tuple[CryptoMachine, list[tuple[str, Any]]], pick: int, new_id: str
) -> None:
    bob, history = chat_history
    message_id, envelope = history[pick]
    if new_id == message_id:
        assert bob.decrypt_chat_message(1, envelope, new_id).content == {"n": pick}
        return
    with pytest.raises(ReplayedMessage):
        bob.decrypt_chat_message(1, envelope, new_id)
