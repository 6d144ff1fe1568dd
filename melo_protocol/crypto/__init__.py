"""Melo's end-to-end encryption layer on vodozemac (Olm, Megolm, SAS): pure, no network I/O.

The SDK drives a `CryptoMachine` over a `CryptoStore` (the device's `SqliteCryptoStore`, or a
`MemoryCryptoStore` in tests); see machine.py for the push-in / pull-out API.
"""

from .account import DeviceAccount
from .errors import (
    CryptoError,
    DecryptionError,
    MissingSessionKey,
    OlmSessionError,
    ReplayedMessage,
    SignatureError,
    StoreError,
    StoreKeyError,
    StoreLocked,
    VerificationError,
)
from .machine import (
    CryptoEvent,
    CryptoMachine,
    DecryptedChatMessage,
    IdentityChanged,
    InvalidDeviceKeys,
    RoomKeyReceived,
    ToDeviceMessage,
    UndecryptableToDevice,
)
from .megolm import RotationPolicy
from .memory_store import MemoryCryptoStore, MemoryRows
from .olm import OlmPayload, PeerDevice
from .safety import PartyIdentity, safety_number, safety_qr
from .sas import SasState, SasVerification
from .signing import canonical_json, verify_device_keys, verify_signed
from .sqlite_store import SqliteCryptoStore
from .store import CryptoStore, DeviceRecord, TrustState

__all__ = [
    "CryptoError",
    "CryptoEvent",
    "CryptoMachine",
    "CryptoStore",
    "DecryptedChatMessage",
    "DecryptionError",
    "DeviceAccount",
    "DeviceRecord",
    "IdentityChanged",
    "InvalidDeviceKeys",
    "MemoryCryptoStore",
    "MemoryRows",
    "MissingSessionKey",
    "OlmPayload",
    "OlmSessionError",
    "PartyIdentity",
    "PeerDevice",
    "ReplayedMessage",
    "RoomKeyReceived",
    "RotationPolicy",
    "SasState",
    "SasVerification",
    "SignatureError",
    "SqliteCryptoStore",
    "StoreError",
    "StoreKeyError",
    "StoreLocked",
    "ToDeviceMessage",
    "TrustState",
    "UndecryptableToDevice",
    "VerificationError",
    "canonical_json",
    "safety_number",
    "safety_qr",
    "verify_device_keys",
    "verify_signed",
]
