"""Megolm group sessions: round trips, tampering, chat/sender binding, rotation policy, key sharing index."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from melo_protocol.crypto import DecryptionError, RotationPolicy
from melo_protocol.crypto.megolm import InboundGroupSession, OutboundGroupSession
from melo_protocol.wire.chats import E2EEnvelope

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SENDER = {"sender_user_id": 1, "sender_device_id": "A1", "sender_key": "curveA1"}


def inbound_for(outbound: OutboundGroupSession, **overrides: Any) -> InboundGroupSession:
    fields = {"sender_key": "curveA1", "sender_user_id": 1, "sender_device_id": "A1", "sender_ed25519": "edA1"}
    fields.update(overrides)
    return InboundGroupSession.from_room_key(outbound.room_key(), **fields)


@pytest.fixture(scope="module")
def sessions() -> tuple[OutboundGroupSession, InboundGroupSession]:
    outbound = OutboundGroupSession.new(42, now=0.0)
    return outbound, inbound_for(outbound)


@SETTINGS
@given(text=st.text(max_size=4000))
@example(text="ü" * 32768)  # 64 KiB of UTF-8
@example(text="\U0001f510 e2e \u202e")
def test_any_text_round_trips(sessions: tuple[OutboundGroupSession, InboundGroupSession], text: str) -> None:
    outbound, inbound = sessions
    index = outbound.message_index
    envelope = outbound.encrypt({"body": text}, **SENDER)
    E2EEnvelope.model_validate(envelope)
    message = inbound.decrypt(envelope, 42)
    assert message.content == {"body": text}
    assert message.message_index == index
    assert (message.sender_user_id, message.sender_device_id) == (1, "A1")


@SETTINGS
@given(bit=st.integers(min_value=0, max_value=10**6))
def test_flipped_bit_is_rejected(sessions: tuple[OutboundGroupSession, InboundGroupSession], bit: int) -> None:
    outbound, inbound = sessions
    envelope = outbound.encrypt({"body": "x"}, **SENDER)
    raw = bytearray(base64.b64decode(envelope["ciphertext"] + "=" * (-len(envelope["ciphertext"]) % 4)))
    bit %= len(raw) * 8
    raw[bit // 8] ^= 1 << (bit % 8)
    tampered = {**envelope, "ciphertext": base64.b64encode(bytes(raw)).decode().rstrip("=")}
    with pytest.raises(DecryptionError):
        inbound.decrypt(tampered, 42)
    assert inbound.decrypt(envelope, 42).content == {"body": "x"}


def test_flipped_bit_in_first_message_is_rejected() -> None:
    # index 0 is where vodozemac tolerates a tag turned into an unknown field; every bit is checked here
    outbound = OutboundGroupSession.new(1, now=0.0)
    inbound = inbound_for(outbound)
    envelope = outbound.encrypt({"body": "first"}, **SENDER)
    raw = base64.b64decode(envelope["ciphertext"] + "=" * (-len(envelope["ciphertext"]) % 4))
    for bit in range(len(raw) * 8):
        tampered = bytearray(raw)
        tampered[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(DecryptionError):
            inbound.decrypt({**envelope, "ciphertext": base64.b64encode(bytes(tampered)).decode().rstrip("=")}, 1)
    assert inbound.decrypt(envelope, 1).content == {"body": "first"}


def test_ciphertext_replayed_into_another_chat_or_as_another_sender_is_rejected() -> None:
    outbound = OutboundGroupSession.new(1, now=0.0)
    inbound, moved, other_sender = inbound_for(outbound), inbound_for(outbound), inbound_for(outbound, sender_user_id=9)
    envelope = outbound.encrypt({"body": "for chat 1"}, **SENDER)
    with pytest.raises(DecryptionError, match="another chat"):
        inbound.decrypt(envelope, 2)
    # a session record that (wrongly) claims chat 2 still refuses: the plaintext names chat 1
    moved.chat_id = 2
    with pytest.raises(DecryptionError, match="another chat"):
        moved.decrypt(envelope, 2)
    with pytest.raises(DecryptionError, match="sender"):
        other_sender.decrypt(envelope, 1)
    with pytest.raises(DecryptionError, match="device_id"):
        inbound.decrypt({**envelope, "device_id": "B1"}, 1)
    assert inbound.decrypt(envelope, 1).content == {"body": "for chat 1"}


def test_late_session_key_starts_at_current_index() -> None:
    outbound = OutboundGroupSession.new(1, now=0.0)
    early = [outbound.encrypt({"n": i}, **SENDER) for i in range(3)]
    late = inbound_for(outbound)
    assert late.first_known_index == 3
    for envelope in early:
        with pytest.raises(DecryptionError):
            late.decrypt(envelope, 1)
    assert late.decrypt(outbound.encrypt({"n": 3}, **SENDER), 1).message_index == 3
    assert late.export_at(0) is None
    exported = late.export_at(3)
    assert exported is not None
    copy = InboundGroupSession.from_room_key(
        {"algorithm": "m.megolm.v1.aes-sha2", "chat_id": 1, "session_id": late.session_id, "session_key": exported,
         "exported": True}, sender_key="curveA1", sender_user_id=1, sender_device_id="A1", sender_ed25519="edA1")
    assert copy.first_known_index == 3


def test_rotation_policy() -> None:
    policy = RotationPolicy(max_messages=2, max_age_seconds=10)
    session = OutboundGroupSession.new(1, now=100.0)
    assert not session.needs_rotation(100.0, policy)
    session.encrypt({}, **SENDER)
    assert not session.needs_rotation(109.9, policy)
    assert session.needs_rotation(110.0, policy)
    session.encrypt({}, **SENDER)
    assert session.needs_rotation(100.0, policy)
    assert RotationPolicy() == RotationPolicy(100, 7 * 24 * 3600.0)


@pytest.mark.parametrize("room_key", [
    {},
    {"algorithm": "m.olm.v1.curve25519-aes-sha2", "chat_id": 1, "session_id": "s", "session_key": "k"},
    {"algorithm": "m.megolm.v1.aes-sha2", "chat_id": "1", "session_id": "s", "session_key": "k"},
    {"algorithm": "m.megolm.v1.aes-sha2", "chat_id": 1, "session_id": "s", "session_key": "not a key"},
])
def test_malformed_room_keys_are_rejected(room_key: dict[str, Any]) -> None:
    with pytest.raises(DecryptionError):
        InboundGroupSession.from_room_key(room_key, sender_key="c", sender_user_id=1, sender_device_id="A",
                                          sender_ed25519="e")


def test_room_key_session_id_must_match_its_key() -> None:
    room_key = OutboundGroupSession.new(1, now=0.0).room_key()
    room_key["session_id"] = OutboundGroupSession.new(1, now=0.0).session_id
    with pytest.raises(DecryptionError, match="session_id"):
        InboundGroupSession.from_room_key(room_key, sender_key="c", sender_user_id=1, sender_device_id="A",
                                          sender_ed25519="e")
