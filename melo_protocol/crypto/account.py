"""A device's long-term Olm account: identity keys, signed device keys, one-time and fallback keys.

One `DeviceAccount` per login (device). It only signs and hands out keys; sessions live in olm.py and
persistence in store.py.
"""

from __future__ import annotations

from typing import Any

import vodozemac

from .errors import StoreKeyError
from .signing import DEVICE_ALGORITHMS, canonical_json, signature_key_id

SignedKeys = dict[str, dict[str, Any]]


class DeviceAccount:
    """Wraps vodozemac.Account for one (user, device)."""

    def __init__(self, user_id: int, device_id: str, inner: vodozemac.Account | None = None) -> None:
        self.user_id = user_id
        self.device_id = device_id
        self.inner = inner if inner is not None else vodozemac.Account()

    # identity -----------------------------------------------------------------------------------------
    @property
    def curve25519(self) -> str:
        return self.inner.curve25519_key.to_base64()

    @property
    def ed25519(self) -> str:
        return self.inner.ed25519_key.to_base64()

    def sign(self, message: bytes) -> str:
        return self.inner.sign(message).to_base64()

    def sign_json(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Return a copy of `obj` with this device's signature added to its `signatures` block."""
        signed = dict(obj)
        signature = self.sign(canonical_json(obj))
        signatures = {u: dict(s) for u, s in obj.get("signatures", {}).items()}
        signatures.setdefault(str(self.user_id), {})[signature_key_id(self.device_id)] = signature
        signed["signatures"] = signatures
        return signed

    def device_keys(self) -> dict[str, Any]:
        """The signed device-keys object uploaded once per device."""
        return self.sign_json({
            "algorithms": list(DEVICE_ALGORITHMS),
            "device_id": self.device_id,
            "keys": {
                f"curve25519:{self.device_id}": self.curve25519,
                f"ed25519:{self.device_id}": self.ed25519,
            },
            "user_id": self.user_id,
        })

    # one-time and fallback keys ---------------------------------------------------------------------
    @property
    def max_one_time_keys(self) -> int:
        return self.inner.max_number_of_one_time_keys

    def generate_one_time_keys(self, count: int) -> SignedKeys:
        """Generate `count` keys; return every unpublished one-time key, signed, keyed "signed_curve25519:<id>"."""
        if count > 0:
            self.inner.generate_one_time_keys(count)
        return self.one_time_keys()

    def one_time_keys(self) -> SignedKeys:
        return {f"signed_curve25519:{key_id}": self.sign_json({"key": key.to_base64()})
                for key_id, key in sorted(self.inner.one_time_keys.items())}

    def generate_fallback_key(self) -> None:
        self.inner.generate_fallback_key()

    def fallback_key(self) -> SignedKeys:
        """The unpublished fallback key, signed (empty once published until a new one is generated)."""
        return {f"signed_curve25519:{key_id}": self.sign_json({"fallback": True, "key": key.to_base64()})
                for key_id, key in sorted(self.inner.fallback_key.items())}

    def mark_published(self) -> None:
        self.inner.mark_keys_as_published()

    # persistence ------------------------------------------------------------------------------------
    def pickle(self, pickle_key: bytes) -> str:
        return self.inner.pickle(pickle_key)

    @classmethod
    def from_pickle(cls, pickle: str, pickle_key: bytes, user_id: int, device_id: str) -> DeviceAccount:
        try:
            inner = vodozemac.Account.from_pickle(pickle, pickle_key)
        except vodozemac.PickleException as exc:
            raise StoreKeyError("the account pickle cannot be decrypted with this key") from exc
        return cls(user_id, device_id, inner)
