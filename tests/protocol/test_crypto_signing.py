"""Canonical JSON, signed device keys and one-time keys, and the pure verifiers the server also uses."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from melo_protocol.crypto import DeviceAccount, canonical_json, verify_device_keys, verify_signed

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20)


def test_canonical_json_is_sorted_compact_utf8_without_signatures() -> None:
    obj = {"b": 1, "a": "é", "signatures": {"x": 1}, "unsigned": {"y": 2}, "c": {"z": [1, 2], "y": None}}
    assert canonical_json(obj) == '{"a":"é","b":1,"c":{"y":null,"z":[1,2]}}'.encode()


@settings(max_examples=50, deadline=None)
@given(obj=st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_signature_survives_json_round_trip_and_key_reordering(obj: dict[str, Any]) -> None:
    account = DeviceAccount(5, "DEV")
    signed = account.sign_json(obj)
    reordered = json.loads(json.dumps(dict(reversed(list(signed.items())))))
    assert verify_signed(reordered, account.ed25519, 5, "DEV")
    assert not verify_signed(reordered, DeviceAccount(5, "DEV").ed25519, 5, "DEV")


def test_device_keys_shape_and_verification() -> None:
    account = DeviceAccount(7, "PHONE")
    keys = account.device_keys()
    assert keys["algorithms"] == ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"]
    assert keys["keys"] == {"curve25519:PHONE": account.curve25519, "ed25519:PHONE": account.ed25519}
    assert (keys["user_id"], keys["device_id"]) == (7, "PHONE")
    assert set(keys["signatures"]) == {"7"} and set(keys["signatures"]["7"]) == {"ed25519:PHONE"}
    assert verify_device_keys(keys, 7, "PHONE")
    assert verify_device_keys({**keys, "unsigned": {"device_display_name": "x"}}, 7, "PHONE")
    assert not verify_device_keys(keys, 8, "PHONE")
    assert not verify_device_keys(keys, 7, "LAPTOP")
    other = DeviceAccount(7, "PHONE")
    swapped = {**keys, "keys": {**keys["keys"], "curve25519:PHONE": other.curve25519}}
    assert not verify_device_keys(swapped, 7, "PHONE")
    resigned_by_other = other.sign_json({k: v for k, v in swapped.items() if k != "signatures"})
    assert not verify_device_keys(resigned_by_other, 7, "PHONE")  # ed25519 in keys is not the signer's


def test_one_time_and_fallback_keys_are_signed() -> None:
    account = DeviceAccount(1, "D")
    keys = account.generate_one_time_keys(3)
    assert len(keys) == 3 and all(k.startswith("signed_curve25519:") for k in keys)
    for signed in keys.values():
        assert set(signed) == {"key", "signatures"}
        assert verify_signed(signed, account.ed25519, 1, "D")
        assert not verify_signed({**signed, "key": account.curve25519}, account.ed25519, 1, "D")
    account.mark_published()
    assert account.one_time_keys() == {}
    assert account.fallback_key() == {}
    account.generate_fallback_key()
    (fallback,) = account.fallback_key().values()
    assert fallback["fallback"] is True and verify_signed(fallback, account.ed25519, 1, "D")


def test_verify_signed_never_raises_on_garbage() -> None:
    account = DeviceAccount(1, "D")
    signed = account.sign_json({"key": "k"})
    garbage: list[Any] = [{}, {"signatures": None}, {"signatures": {"1": {"ed25519:D": 5}}},
                          {"signatures": {"1": {"ed25519:D": "!!"}}}, {**signed, "key": float("nan")}]
    for obj in garbage:
        assert not verify_signed(obj, account.ed25519, 1, "D")
    assert not verify_signed(signed, "not a key", 1, "D")
    assert not verify_device_keys({"user_id": 1}, 1, "D")
