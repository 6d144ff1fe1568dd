"""The one exception hierarchy of melo_protocol.crypto: every vodozemac error is translated here, once.

The SDK catches `CryptoError` subclasses and never sees a vodozemac exception type.
"""

from __future__ import annotations


class CryptoError(Exception):
    """Base of every error raised by melo_protocol.crypto."""


class DecryptionError(CryptoError):
    """A ciphertext could not be decrypted or failed an integrity/binding check (tampered, wrong chat, …)."""


class MissingSessionKey(DecryptionError):
    """The Megolm session key for this message has not arrived (yet); the SDK waits for it or re-requests it."""

    def __init__(self, session_id: str, sender_key: str) -> None:
        super().__init__(f"no inbound group session {session_id} from {sender_key}")
        self.session_id = session_id
        self.sender_key = sender_key


class ReplayedMessage(DecryptionError):
    """A (session id, message index) already seen under another message id: a replay."""

    def __init__(self, session_id: str, message_index: int, first_message_id: str) -> None:
        super().__init__(f"message index {message_index} of session {session_id} was already used by "
                         f"message {first_message_id}")
        self.session_id = session_id
        self.message_index = message_index
        self.first_message_id = first_message_id


class SignatureError(CryptoError):
    """A signed object (device keys, one-time key) does not carry a valid signature."""


class OlmSessionError(CryptoError):
    """An Olm session could not be created (bad claimed key, unknown device, …)."""


class StoreKeyError(CryptoError):
    """The local crypto store could not be opened with the key given (wrong key or not a Melo store)."""


class StoreError(CryptoError):
    """The local crypto store is unusable (corrupt row, schema from a newer version, …)."""


class VerificationError(CryptoError):
    """A SAS verification message arrived out of order or was malformed."""


class StoreLocked(StoreError):
    """Another process (or another open CryptoStore) is using this store; two writers would reuse ratchets."""
