"""What the crypto machine needs from its store: the `CryptoStore` protocol and the records it holds.

Two implementations: `SqliteCryptoStore` (sqlite_store.py), a device's encrypted store on disk, and
`MemoryCryptoStore` (memory_store.py), the same contract in memory for tests and benchmarks. The
machine (machine.py) and the Olm layer (olm.py) are typed against this protocol only.

The contract, beyond the signatures (tests/protocol/test_crypto_store.py runs it against both):

- Writes are committed at once, or with the outermost `transaction()`; an exception inside a
  transaction rolls every write of it back and drops the cached objects, so the next read returns the
  last committed state (an account whose one-time key a failed decryption spent still has the key).
- Loaded objects are cached: reading twice returns the same object, which callers change in place and
  then save.
- An outbound Megolm session is saved *leased* (in use by this store object) and handed back by
  `flush()`/`close()`; one found leased on load (a crash, another process) is never continued: the
  store returns None, and the machine starts a new session, so no message index is used twice.
- `record_megolm_index` remembers which message first used an index, durably after `flush()` at the
  latest, and is never rolled back.
"""

from __future__ import annotations

import enum
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

import vodozemac

from .account import DeviceAccount
from .megolm import InboundGroupSession, OutboundGroupSession


class TrustState(enum.StrEnum):
    UNVERIFIED = "unverified"
    VERIFIED = "verified"
    BLOCKED = "blocked"


@dataclass
class DeviceRecord:
    """A known device: its first-seen (or user-accepted) identity keys, trust, and any changed keys seen since."""

    user_id: int
    device_id: str
    curve25519: str
    ed25519: str
    trust: TrustState = TrustState.UNVERIFIED
    pending_curve25519: str | None = None
    pending_ed25519: str | None = None

    @property
    def identity_changed(self) -> bool:
        """True while a changed identity key is waiting for the user's decision; nothing is shared meanwhile."""
        return self.pending_curve25519 is not None


@dataclass
class OlmSessionEntry:
    session_id: str
    peer_curve25519: str
    inner: vodozemac.Session
    last_used: int


class CryptoStore(Protocol):
    """One device's crypto state: its account, Olm and Megolm sessions, seen indices, known devices."""

    def flush(self) -> None:
        """Persist what is batched (seen indices) and hand back the leased outbound sessions."""
        ...

    def close(self) -> None:
        """Flush and release the store; a second close does nothing."""
        ...

    def transaction(self) -> AbstractContextManager[None]:
        """Group writes so they commit together; nested uses join the outermost one."""
        ...

    # the account
    def load_account(self) -> DeviceAccount | None: ...

    def save_account(self, account: DeviceAccount) -> None: ...

    def device_keys_published(self) -> bool: ...

    def set_device_keys_published(self) -> None: ...

    # Olm sessions
    def olm_sessions(self, peer_curve25519: str) -> list[OlmSessionEntry]:
        """Sessions with this peer, most recently used first."""
        ...

    def save_olm_session(self, peer_curve25519: str, session: vodozemac.Session) -> OlmSessionEntry:
        """Insert or update a session and make it the most recently used one for this peer."""
        ...

    # Megolm sessions
    def inbound_group_session(self, sender_key: str, session_id: str) -> InboundGroupSession | None: ...

    def save_inbound_group_session(self, session: InboundGroupSession) -> None: ...

    def outbound_group_session(self, chat_id: int) -> OutboundGroupSession | None:
        """This device's sending session for the chat; None if there is none or it is leased by another."""
        ...

    def save_outbound_group_session(self, session: OutboundGroupSession) -> None:
        """Store the session leased: before encrypting with a new session or after sharing it further."""
        ...

    def holds_lease(self, chat_id: int) -> bool: ...

    def discard_outbound_group_session(self, chat_id: int) -> None: ...

    def record_megolm_index(self, sender_key: str, session_id: str, message_index: int, message_id: str) -> str:
        """Remember that this index was used by ``message_id``; return the message id that first used it."""
        ...

    # devices
    def device(self, user_id: int, device_id: str) -> DeviceRecord | None: ...

    def device_by_curve25519(self, curve25519: str) -> DeviceRecord | None: ...

    def save_device(self, record: DeviceRecord) -> None: ...
