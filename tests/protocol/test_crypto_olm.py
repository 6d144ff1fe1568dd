"""Olm 1:1 sessions through OlmSessions + CryptoStore: round trips, tampering, bindings, one-time keys."""

from __future__ import annotations

import base64
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from melo_protocol.crypto import DecryptionError, DeviceAccount, SignatureError, SqliteCryptoStore
from melo_protocol.crypto.olm import OlmSessions, PeerDevice, b64decode, b64encode
from melo_protocol.crypto.store import DeviceRecord

KEY = b"\x01" * 32
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


OPENED: list[SqliteCryptoStore] = []


@pytest.fixture(autouse=True, scope="module")
def _close_stores() -> Iterator[None]:
    yield
    for store in OPENED:
        store.close()


def make_device(directory: Path, user_id: int, device_id: str) -> OlmSessions:
    store = SqliteCryptoStore(directory / f"{user_id}-{device_id}", KEY)
    OPENED.append(store)
    store.save_account(DeviceAccount(user_id, device_id))
    return OlmSessions(store)


def peer_of(sessions: OlmSessions) -> PeerDevice:
    a = sessions.account
    return PeerDevice(a.user_id, a.device_id, a.curve25519, a.ed25519)


def claim_one(sessions: OlmSessions) -> dict[str, dict[str, Any]]:
    account = sessions.account
    keys = account.generate_one_time_keys(1)
    sessions.store.save_account(account)
    key_id = sorted(keys)[0]
    return {key_id: keys[key_id]}


def connect(directory: Path) -> tuple[OlmSessions, OlmSessions]:
    alice, bob = make_device(directory, 1, "A"), make_device(directory, 2, "B")
    alice.create_outbound_session(peer_of(bob), claim_one(bob))
    return alice, bob


def flip(envelope: dict[str, Any], recipient_curve: str, bit: int) -> dict[str, Any]:
    part = envelope["ciphertext"][recipient_curve]
    body = bytearray(b64decode(part["body"]))
    bit %= len(body) * 8
    body[bit // 8] ^= 1 << (bit % 8)
    return {**envelope, "ciphertext": {recipient_curve: {"type": part["type"], "body": b64encode(bytes(body))}}}


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[OlmSessions, OlmSessions]:
    alice, bob = connect(tmp_path_factory.mktemp("olm"))
    bob.decrypt(alice.encrypt(peer_of(bob), "hello", {}))
    alice.decrypt(bob.encrypt(peer_of(alice), "hello", {}))
    return alice, bob


@SETTINGS
@given(text=st.text(max_size=2000))
@example(text="é" * 32768)  # 64 KiB of UTF-8
@example(text="\U0001f600\u0000\ud7ff")
def test_any_text_round_trips(pair: tuple[OlmSessions, OlmSessions], text: str) -> None:
    alice, bob = pair
    envelope = alice.encrypt(peer_of(bob), "m.test", {"text": text})
    payload = bob.decrypt(envelope)
    assert payload.content == {"text": text} and payload.type == "m.test"
    assert (payload.sender_user_id, payload.sender_device_id) == (1, "A")
    assert payload.sender_key == alice.account.curve25519 and payload.sender_ed25519 == alice.account.ed25519


@SETTINGS
@given(bit=st.integers(min_value=0, max_value=10**6))
def test_flipped_bit_in_normal_message_is_rejected(pair: tuple[OlmSessions, OlmSessions], bit: int) -> None:
    alice, bob = pair
    envelope = alice.encrypt(peer_of(bob), "m.test", {"n": bit})
    assert envelope["ciphertext"][bob.account.curve25519]["type"] == 1
    with pytest.raises(DecryptionError):
        bob.decrypt(flip(envelope, bob.account.curve25519, bit))
    assert bob.decrypt(envelope).content == {"n": bit}  # the failed attempt left the session intact


@settings(max_examples=25, deadline=None)
@given(bit=st.integers(min_value=0, max_value=10**6))
def test_flipped_bit_in_pre_key_message_is_rejected(bit: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        alice, bob = connect(Path(directory))
        envelope = alice.encrypt(peer_of(bob), "m.test", {"n": 1})
        assert envelope["ciphertext"][bob.account.curve25519]["type"] == 0
        with pytest.raises(DecryptionError):
            bob.decrypt(flip(envelope, bob.account.curve25519, bit))
        assert bob.decrypt(envelope).content == {"n": 1}
        bob.store.close()
        alice.store.close()


def test_pre_key_session_is_committed_with_the_spent_one_time_key(tmp_path: Path) -> None:
    alice, bob = connect(tmp_path)
    assert len(bob.account.inner.one_time_keys) == 1
    envelope = alice.encrypt(peer_of(bob), "m.test", {"n": 1})
    assert bob.decrypt(envelope).content == {"n": 1}
    bob.store.close()
    reopened = OlmSessions(SqliteCryptoStore(tmp_path / "2-B", KEY))
    OPENED.append(reopened.store)
    assert reopened.account.inner.one_time_keys == {}
    assert reopened.has_session(alice.account.curve25519)
    assert reopened.decrypt(alice.encrypt(peer_of(reopened), "m.test", {"n": 2})).content == {"n": 2}
    with pytest.raises(DecryptionError):
        reopened.decrypt(envelope)  # a replayed pre-key message


def test_rejected_pre_key_message_rolls_back_and_keeps_the_one_time_key(tmp_path: Path) -> None:
    alice, bob = connect(tmp_path)
    wrong = PeerDevice(99, "B", bob.account.curve25519, bob.account.ed25519)  # claims another recipient user
    with pytest.raises(DecryptionError, match="another recipient"):
        bob.decrypt(alice.encrypt(wrong, "m.test", {}))
    assert len(bob.account.inner.one_time_keys) == 1  # reloaded from the last commit
    assert not bob.has_session(alice.account.curve25519)


def test_recipient_and_sender_bindings(tmp_path: Path) -> None:
    alice, bob = connect(tmp_path)
    bob.decrypt(alice.encrypt(peer_of(bob), "m.test", {}))
    bad_ed25519 = PeerDevice(2, "B", bob.account.curve25519, alice.account.ed25519)
    with pytest.raises(DecryptionError, match="another recipient"):
        bob.decrypt(alice.encrypt(bad_ed25519, "m.test", {}))
    # bob knows alice's curve key as belonging to some other device: the payload's claims must match it
    bob.store.save_device(DeviceRecord(1, "OTHER", alice.account.curve25519, alice.account.ed25519))
    with pytest.raises(DecryptionError, match="sender claims"):
        bob.decrypt(alice.encrypt(peer_of(bob), "m.test", {}))
    # addressed to another device entirely
    carol = make_device(tmp_path, 3, "C")
    with pytest.raises(DecryptionError):
        carol.decrypt(alice.encrypt(peer_of(bob), "m.test", {}))


def test_claimed_key_signature_is_checked(tmp_path: Path) -> None:
    alice, bob = make_device(tmp_path, 1, "A"), make_device(tmp_path, 2, "B")
    claimed = claim_one(bob)
    ((key_id, signed),) = claimed.items()
    forged = {key_id: {**signed, "key": alice.account.curve25519}}
    with pytest.raises(SignatureError):
        alice.create_outbound_session(peer_of(bob), forged)
    impostor = PeerDevice(2, "B", bob.account.curve25519, alice.account.ed25519)
    with pytest.raises(SignatureError):
        alice.create_outbound_session(impostor, claimed)
    assert not alice.has_session(bob.account.curve25519)


def test_fallback_key_sessions(tmp_path: Path) -> None:
    alice, carol, bob = (make_device(tmp_path, u, d) for u, d in ((1, "A"), (3, "C"), (2, "B")))
    account = bob.account
    account.generate_fallback_key()
    bob.store.save_account(account)
    fallback = account.fallback_key()
    assert next(iter(fallback.values()))["fallback"] is True
    for sender in (alice, carol):
        sender.create_outbound_session(peer_of(bob), fallback)
        assert bob.decrypt(sender.encrypt(peer_of(bob), "m.test", {"from": sender.account.user_id})).content == {
            "from": sender.account.user_id
        }


def test_malformed_envelopes_are_decryption_errors(pair: tuple[OlmSessions, OlmSessions]) -> None:
    _, bob = pair
    curve = bob.account.curve25519
    bad: list[Any] = [
        {},
        {"algorithm": "m.megolm.v1.aes-sha2"},
        {"algorithm": "m.olm.v1.curve25519-aes-sha2", "sender_key": "x", "ciphertext": {}},
        {
            "algorithm": "m.olm.v1.curve25519-aes-sha2",
            "sender_key": "x",
            "ciphertext": {curve: {"type": 1, "body": "!!"}},
        },
        {
            "algorithm": "m.olm.v1.curve25519-aes-sha2",
            "sender_key": "x",
            "ciphertext": {curve: {"type": 7, "body": base64.b64encode(b"abc").decode()}},
        },
        {
            "algorithm": "m.olm.v1.curve25519-aes-sha2",
            "sender_key": "x",
            "ciphertext": {curve: {"type": 1, "body": base64.b64encode(b"\x03abc").decode()}},
        },
    ]
    for envelope in bad:
        with pytest.raises(DecryptionError):
            bob.decrypt(envelope)
