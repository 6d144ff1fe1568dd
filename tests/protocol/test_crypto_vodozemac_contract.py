"""Contract tests of the vodozemac 0.10.0 bindings as melo_protocol.crypto relies on them.

The shipped stubs and the runtime differ in places (fallback keys exist but are not in the stubs;
emoji_indices is bytes; sign takes bytes); these tests pin the behaviour we build on.
"""

from __future__ import annotations

import pytest
import vodozemac


def test_pickle_key_must_be_32_bytes_and_wrong_key_is_pickle_exception() -> None:
    account = vodozemac.Account()
    with pytest.raises(vodozemac.PickleException):
        account.pickle(b"k" * 16)
    pickle = account.pickle(b"k" * 32)
    assert vodozemac.Account.from_pickle(pickle, b"k" * 32).ed25519_key == account.ed25519_key
    with pytest.raises(vodozemac.PickleException):
        vodozemac.Account.from_pickle(pickle, b"j" * 32)
    assert issubclass(vodozemac.PickleException, ValueError)


def test_sign_takes_bytes_and_verify_raises_signature_exception() -> None:
    account = vodozemac.Account()
    signature = account.sign(b"message")
    account.ed25519_key.verify_signature(b"message", signature)
    with pytest.raises(vodozemac.SignatureException):
        account.ed25519_key.verify_signature(b"messagE", signature)
    with pytest.raises(TypeError):
        account.sign("text")  # type: ignore[arg-type]
    with pytest.raises(vodozemac.KeyException):
        vodozemac.Ed25519PublicKey.from_base64("abc")


def test_one_time_keys_vanish_after_use_and_after_publishing() -> None:
    alice, bob = vodozemac.Account(), vodozemac.Account()
    bob.generate_one_time_keys(2)
    keys = bob.one_time_keys
    assert len(keys) == 2 and bob.max_number_of_one_time_keys == 50
    key_id, one_time_key = sorted(keys.items())[0]
    session = alice.create_outbound_session(bob.curve25519_key, one_time_key)
    message = session.encrypt(b"hi")
    message_type, _ = message.to_parts()
    assert message_type == 0  # pre-key until the other side answers
    pre_key = message.to_pre_key()
    assert pre_key is not None and pre_key.session_id() == session.session_id
    inbound, plaintext = bob.create_inbound_session(alice.curve25519_key, pre_key)
    assert plaintext == b"hi" and inbound.session_id == session.session_id
    assert key_id not in bob.one_time_keys and len(bob.one_time_keys) == 1
    with pytest.raises(vodozemac.SessionCreationException):
        bob.create_inbound_session(alice.curve25519_key, pre_key)  # the one-time key is spent
    bob.mark_keys_as_published()
    assert bob.one_time_keys == {}


def test_fallback_key_exists_at_runtime_and_is_reusable() -> None:
    alice, carol, bob = vodozemac.Account(), vodozemac.Account(), vodozemac.Account()
    assert bob.fallback_key == {}
    bob.generate_fallback_key()
    (fallback,) = bob.fallback_key.values()
    for sender in (alice, carol):
        pre_key = sender.create_outbound_session(bob.curve25519_key, fallback).encrypt(b"x").to_pre_key()
        assert pre_key is not None
        assert bob.create_inbound_session(sender.curve25519_key, pre_key)[1] == b"x"
    bob.mark_keys_as_published()
    assert bob.fallback_key == {}


def test_olm_message_types_and_errors() -> None:
    alice, bob = vodozemac.Account(), vodozemac.Account()
    bob.generate_one_time_keys(1)
    out = alice.create_outbound_session(bob.curve25519_key, next(iter(bob.one_time_keys.values())))
    pre_key = out.encrypt(b"1").to_pre_key()
    assert pre_key is not None
    inbound, _ = bob.create_inbound_session(alice.curve25519_key, pre_key)
    assert out.decrypt(inbound.encrypt(b"2")) == b"2"
    normal = out.encrypt(b"3")
    assert normal.to_parts()[0] == 1 and normal.to_pre_key() is None
    assert inbound.decrypt(normal) == b"3"
    with pytest.raises(vodozemac.OlmDecryptionException):
        inbound.decrypt(normal)  # the message key is gone: Olm itself refuses a replay
    with pytest.raises(vodozemac.DecodeException):
        vodozemac.AnyOlmMessage.from_parts(2, b"\x03")
    message_type, body = out.encrypt(b"4").to_parts()
    tampered = bytearray(body)
    tampered[-1] ^= 1
    with pytest.raises(vodozemac.OlmDecryptionException):
        inbound.decrypt(vodozemac.AnyOlmMessage.from_parts(message_type, bytes(tampered)))


def test_group_session_key_is_at_current_index_and_export_at() -> None:
    outbound = vodozemac.GroupSession()
    early = outbound.encrypt(b"0")
    assert outbound.message_index == 1 and early.message_index() == 0
    late = vodozemac.InboundGroupSession(outbound.session_key)
    assert late.first_known_index == 1
    with pytest.raises(vodozemac.MegolmDecryptionException):
        late.decrypt(early)
    message = outbound.encrypt(b"1")
    decrypted = late.decrypt(message)
    assert (decrypted.plaintext, decrypted.message_index) == (b"1", 1)
    assert late.decrypt(message).plaintext == b"1"  # no replay protection inside vodozemac: ours is needed
    assert late.export_at(0) is None
    exported = late.export_at(1)
    assert exported is not None
    imported = vodozemac.InboundGroupSession.import_session(exported)
    assert imported.first_known_index == 1 and imported.session_id == outbound.session_id
    with pytest.raises(vodozemac.SessionKeyDecodeException):
        vodozemac.SessionKey("not a key")


def test_megolm_tampering_raises_decode_or_megolm_error() -> None:
    outbound = vodozemac.GroupSession()
    inbound = vodozemac.InboundGroupSession(outbound.session_key)
    raw = outbound.encrypt(b"payload").to_bytes()
    for position in (0, 1, len(raw) // 2, len(raw) - 1):
        tampered = bytearray(raw)
        tampered[position] ^= 1
        with pytest.raises((vodozemac.DecodeException, vodozemac.MegolmDecryptionException)):
            inbound.decrypt(vodozemac.MegolmMessage.from_bytes(bytes(tampered)))


def test_sas_bytes_and_mac() -> None:
    alice, bob = vodozemac.Sas(), vodozemac.Sas()
    alice_established = alice.diffie_hellman(bob.public_key)
    bob_established = bob.diffie_hellman(alice.public_key)
    codes = alice_established.bytes("info")
    assert isinstance(codes.emoji_indices, bytes) and len(codes.emoji_indices) == 7
    assert all(index < 64 for index in codes.emoji_indices)
    assert codes.decimals == bob_established.bytes("info").decimals
    assert all(1000 <= d <= 9191 for d in codes.decimals)
    mac = alice_established.calculate_mac("key", "mac-info")
    bob_established.verify_mac("key", "mac-info", mac)
    with pytest.raises(vodozemac.SasException):
        bob_established.verify_mac("other", "mac-info", mac)
    with pytest.raises(vodozemac.SasException):
        alice.diffie_hellman(bob.public_key)  # a Sas is single-use
