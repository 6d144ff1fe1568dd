"""Safety numbers: deterministic, symmetric, sensitive to every key, and drawn as a terminal QR code."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from melo_protocol.crypto import DeviceAccount, PartyIdentity, safety_number, safety_qr
from melo_protocol.crypto.safety import party_digits, safety_qr_payload

KEYS = [DeviceAccount(1, f"D{i}").ed25519 for i in range(4)]


def test_format_twelve_groups_of_five_digits() -> None:
    number = safety_number(PartyIdentity.of(1, KEYS[0]), PartyIdentity.of(2, KEYS[1]))
    groups = number.split(" ")
    assert len(groups) == 12 and all(len(g) == 5 and g.isdigit() for g in groups)
    assert len(party_digits(PartyIdentity.of(1, KEYS[0]))) == 30


@settings(max_examples=10, deadline=None)
@given(a=st.integers(min_value=1, max_value=10**9), b=st.integers(min_value=1, max_value=10**9))
def test_symmetric_and_deterministic(a: int, b: int) -> None:
    alice, bob = PartyIdentity.of(a, KEYS[0]), PartyIdentity.of(b, KEYS[1])
    assert safety_number(alice, bob) == safety_number(bob, alice) == safety_number(alice, bob)


def test_any_key_or_user_change_changes_the_number() -> None:
    base = safety_number(PartyIdentity.of(1, KEYS[0]), PartyIdentity.of(2, KEYS[1]))
    assert safety_number(PartyIdentity.of(1, KEYS[2]), PartyIdentity.of(2, KEYS[1])) != base
    assert safety_number(PartyIdentity.of(1, KEYS[0]), PartyIdentity.of(2, KEYS[3])) != base
    assert safety_number(PartyIdentity.of(3, KEYS[0]), PartyIdentity.of(2, KEYS[1])) != base
    # only one party's half changes when only that party's key changes
    changed = safety_number(PartyIdentity.of(1, KEYS[0]), PartyIdentity.of(2, KEYS[3])).replace(" ", "")
    assert changed[:30] == base.replace(" ", "")[:30] and changed[30:] != base.replace(" ", "")[30:]
    # a user's device set is order-independent
    assert party_digits(PartyIdentity.of(1, [KEYS[0], KEYS[1]])) == party_digits(PartyIdentity.of(1, KEYS[1::-1]))


def test_qr_is_square_half_block_text_of_the_same_material() -> None:
    alice, bob = PartyIdentity.of(1, KEYS[0]), PartyIdentity.of(2, KEYS[1])
    assert safety_qr_payload(alice, bob) == "melo-safety:1:" + safety_number(alice, bob).replace(" ", "")
    art = safety_qr(alice, bob)
    assert art == safety_qr(bob, alice)
    lines = art.split("\n")
    width = len(lines[0])
    assert all(len(line) == width for line in lines)
    assert set(art) <= {"█", "▀", "▄", " ", "\n"}
    assert len(lines) == (width + 1) // 2  # two module rows per text line
    assert set(lines[0]) == {"█"}  # the quiet zone is light, drawn as blocks on a dark terminal
    assert set(safety_qr(alice, bob, invert=False).split("\n")[0]) == {" "}
