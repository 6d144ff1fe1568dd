"""Canonical JSON and Ed25519 signatures of JSON objects (Matrix-style `signatures` blocks).

Pure functions with no account state, so the server can import `verify_signed` / `verify_device_keys`
to check key uploads with exactly the rules the clients sign by.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import vodozemac

OLM_ALGORITHM = "m.olm.v1.curve25519-aes-sha2"
MEGOLM_ALGORITHM = "m.megolm.v1.aes-sha2"
DEVICE_ALGORITHMS = [OLM_ALGORITHM, MEGOLM_ALGORITHM]


def canonical_json(obj: Mapping[str, Any]) -> bytes:
    """The bytes that are signed: sorted keys, no whitespace, UTF-8, without `signatures` and `unsigned`."""
    stripped = {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}
    return json.dumps(stripped, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def signature_key_id(device_id: str) -> str:
    return f"ed25519:{device_id}"


def verify_signed(obj: Mapping[str, Any], ed25519_b64: str, user_id: int | str, device_id: str) -> bool:
    """True if `obj` carries a valid signature by `ed25519_b64` under signatures[user_id]["ed25519:<device>"].

    Never raises for malformed input: anything unreadable is simply not a valid signature.
    """
    try:
        signature_b64 = obj["signatures"][str(user_id)][signature_key_id(device_id)]
        if not isinstance(signature_b64, str) or not isinstance(ed25519_b64, str):
            return False
        key = vodozemac.Ed25519PublicKey.from_base64(ed25519_b64)
        signature = vodozemac.Ed25519Signature.from_base64(signature_b64)
        key.verify_signature(canonical_json(obj), signature)
    except (KeyError, TypeError, ValueError):  # vodozemac's exceptions are ValueError subclasses
        return False
    return True


def verify_device_keys(device_keys: Mapping[str, Any], user_id: int, device_id: str) -> bool:
    """True if a device-keys object names this user and device, lists both keys and is self-signed."""
    try:
        if device_keys["user_id"] != user_id or device_keys["device_id"] != device_id:
            return False
        keys = device_keys["keys"]
        ed25519 = keys[f"ed25519:{device_id}"]
        curve25519 = keys[f"curve25519:{device_id}"]
        if not isinstance(curve25519, str):
            return False
        vodozemac.Curve25519PublicKey.from_base64(curve25519)
    except (KeyError, TypeError, ValueError):
        return False
    return verify_signed(device_keys, ed25519, user_id, device_id)
