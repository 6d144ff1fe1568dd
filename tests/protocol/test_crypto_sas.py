"""SAS verification state machine: honest peers agree and verify; a key-swapping relay is caught."""

from __future__ import annotations

from typing import Any

import pytest

from melo_protocol.crypto import DeviceAccount, SasState, SasVerification, VerificationError
from melo_protocol.crypto.sas import EMOJI, KEY, START

ALICE, BOB = DeviceAccount(1, "A"), DeviceAccount(2, "B")


def begin(alice_view_of_bob: str | None = None, bob_view_of_alice: str | None = None
          ) -> tuple[SasVerification, SasVerification, dict[str, Any]]:
    alice, start = SasVerification.start(
        transaction_id="t1", own_user_id=1, own_device_id="A", own_ed25519=ALICE.ed25519,
        their_user_id=2, their_device_id="B", their_ed25519=alice_view_of_bob or BOB.ed25519)
    bob = SasVerification.from_start(start, own_user_id=2, own_device_id="B", own_ed25519=BOB.ed25519,
                                     their_ed25519=bob_view_of_alice or ALICE.ed25519)
    return alice, bob, start


def exchange_keys(alice: SasVerification, bob: SasVerification) -> None:
    (alice_key,) = alice.receive(bob.accept())
    (bob_key,) = bob.receive(alice_key)
    assert alice.receive(bob_key) == []


def test_honest_peers_see_the_same_codes_and_verify() -> None:
    alice, bob, start = begin()
    assert start["type"] == START and alice.state is SasState.STARTED and bob.state is SasState.CREATED
    exchange_keys(alice, bob)
    assert alice.state is bob.state is SasState.KEYS_EXCHANGED
    assert alice.emoji() == bob.emoji() and len(alice.emoji()) == 7
    assert all(e in EMOJI for e in alice.emoji())
    assert alice.decimals() == bob.decimals()
    alice_mac = alice.confirm()
    assert alice.state is SasState.CONFIRMED
    assert bob.receive(alice_mac) == []
    assert bob.state is SasState.KEYS_EXCHANGED  # bob has not confirmed yet
    assert alice.receive(bob.confirm()) == []
    assert alice.state is bob.state is SasState.VERIFIED


def test_relay_swapping_sas_keys_makes_codes_differ() -> None:
    alice, bob, _ = begin()
    mallory_for_alice, mallory_for_bob = SasVerification.start(
        transaction_id="t1", own_user_id=2, own_device_id="B", own_ed25519=BOB.ed25519, their_user_id=1,
        their_device_id="A", their_ed25519=ALICE.ed25519)[0], SasVerification.start(
        transaction_id="t1", own_user_id=1, own_device_id="A", own_ed25519=ALICE.ed25519, their_user_id=2,
        their_device_id="B", their_ed25519=BOB.ed25519)[0]
    accept = bob.accept()
    (alice_key,) = alice.receive(accept)
    swapped_to_bob = {**alice_key, "key": mallory_for_bob._public_key}
    (bob_key,) = bob.receive(swapped_to_bob)
    swapped_to_alice = {**bob_key, "key": mallory_for_alice._public_key}
    # the relay cannot also fix the commitment bob made to his real key before seeing alice's
    (cancel,) = alice.receive(swapped_to_alice)
    assert cancel["type"].endswith("cancel") and alice.state is SasState.CANCELLED
    assert alice.cancel_code == "m.mismatched_commitment"


def test_relay_swapping_keys_without_commitment_check_still_yields_different_codes() -> None:
    alice, bob, _ = begin()
    mallory = SasVerification.start(transaction_id="t1", own_user_id=2, own_device_id="B",
                                    own_ed25519=BOB.ed25519, their_user_id=1, their_device_id="A",
                                    their_ed25519=ALICE.ed25519)[0]
    alice.receive(bob.accept())
    (_bob_key,) = bob.receive({"type": KEY, "transaction_id": "t1", "key": mallory._public_key})
    # bob's view is established against mallory's key; alice never got bob's real key: codes cannot match
    alice._commitment = None
    alice._establish(mallory._public_key)
    assert bob.emoji() != alice.emoji() or bob.decimals() != alice.decimals()
    cancel = bob.mismatch()
    assert alice.receive(cancel) == [] and alice.state is SasState.CANCELLED


def test_mac_of_unexpected_key_cancels() -> None:
    impostor = DeviceAccount(1, "A")
    alice, bob, _ = begin(bob_view_of_alice=impostor.ed25519)  # bob's record of alice's key differs
    exchange_keys(alice, bob)
    (cancel,) = bob.receive(alice.confirm())
    assert cancel["code"] == "m.key_mismatch" and bob.state is SasState.CANCELLED
    assert alice.receive(cancel) == [] and alice.state is SasState.CANCELLED


def test_out_of_order_and_foreign_messages() -> None:
    alice, bob, _ = begin()
    with pytest.raises(VerificationError):
        alice.emoji()
    with pytest.raises(VerificationError):
        alice.confirm()
    with pytest.raises(VerificationError):
        alice.receive({"type": KEY, "transaction_id": "other", "key": "x"})
    (cancel,) = bob.receive({"type": KEY, "transaction_id": "t1", "key": "x"})  # before accept
    assert cancel["code"] == "m.unexpected_message" and bob.state is SasState.CANCELLED
    with pytest.raises(VerificationError):
        SasVerification.from_start({"type": KEY}, own_user_id=2, own_device_id="B", own_ed25519="e",
                                   their_ed25519="e")
