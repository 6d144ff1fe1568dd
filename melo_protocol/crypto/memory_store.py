"""The `CryptoStore` contract in memory: for tests and benchmarks, nothing written to disk.

Committed state is kept as vodozemac pickles (under a random key per set of rows) in plain dicts, with
the live objects cached on top, as in the SQLite store. So a failed transaction rolls back exactly as
there (the cached objects it changed are dropped and read again from the last commit), and a test can
restart a device, or crash it (drop the store without `close()`), by opening a new `MemoryCryptoStore`
on the same `MemoryRows`. No lock: two stores on the same rows at once are the caller's mistake.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

import vodozemac

from .account import DeviceAccount
from .cached_store import CachedStore
from .megolm import InboundGroupSession, OutboundGroupSession
from .store import DeviceRecord, OlmSessionEntry

Shared = frozenset[tuple[int, str, str]]  # (user id, device id, curve25519) an outbound session went to


@dataclass
class MemoryRows:
    """What a `MemoryCryptoStore` has committed: hand it to a new store to open the same device again."""

    pickle_key: bytes = field(default_factory=lambda: os.urandom(32))
    account: tuple[int, str, str] | None = None  # (user id, device id, pickle)
    device_keys_published: bool = False
    olm: dict[str, tuple[str, str, int]] = field(default_factory=dict)  # session id → (peer, pickle, last used)
    # (sender key, session id) → (chat id, sender user id, sender device id, sender ed25519, pickle)
    inbound: dict[tuple[str, str], tuple[int, int, str, str, str]] = field(default_factory=dict)
    outbound: dict[int, tuple[str, float, Shared, bool]] = field(default_factory=dict)  # → (…, leased)
    devices: dict[tuple[int, str], DeviceRecord] = field(default_factory=dict)  # copies, never handed out
    seen: dict[tuple[str, str], dict[int, str]] = field(default_factory=dict)  # never rolled back

    def snapshot(self) -> MemoryRows:
        return dataclasses.replace(
            self,
            olm=dict(self.olm),
            inbound=dict(self.inbound),
            outbound=dict(self.outbound),
            devices=dict(self.devices),
        )

    def restore(self, snapshot: MemoryRows) -> None:
        self.account, self.device_keys_published = snapshot.account, snapshot.device_keys_published
        self.olm, self.inbound, self.outbound, self.devices = (
            snapshot.olm,
            snapshot.inbound,
            snapshot.outbound,
            snapshot.devices,
        )


class MemoryCryptoStore(CachedStore):
    """A `CryptoStore` in memory (see the module's first lines)."""

    def __init__(self, rows: MemoryRows | None = None) -> None:
        self.rows = rows if rows is not None else MemoryRows()
        self._key = self.rows.pickle_key
        self._depth = 0
        self._before: MemoryRows | None = None  # the committed rows when the outermost transaction began
        self._clock = max((last_used for _, _, last_used in self.rows.olm.values()), default=0)
        self._closed = False
        self._reset_caches()

    def _begin(self) -> None:
        self._before = self.rows.snapshot()

    def _commit(self) -> None:
        self._before = None

    def _rollback(self) -> None:
        assert self._before is not None
        self.rows.restore(self._before)
        self._before = None

    def _release(self) -> None:
        pass  # nothing held open

    def _flush_pending(self) -> None:
        pass  # seen indices are kept at once

    # account --------------------------------------------------------------------------------------------------
    def load_account(self) -> DeviceAccount | None:
        if self._account is None:
            if self.rows.account is None:
                return None
            user_id, device_id, pickle = self.rows.account
            self._account = DeviceAccount.from_pickle(pickle, self._key, user_id, device_id)
        return self._account

    def save_account(self, account: DeviceAccount) -> None:
        with self.transaction():
            self.rows.account = (account.user_id, account.device_id, account.pickle(self._key))
        self._account = account

    def device_keys_published(self) -> bool:
        return self.rows.account is not None and self.rows.device_keys_published

    def set_device_keys_published(self) -> None:
        with self.transaction():
            if self.rows.account is not None:
                self.rows.device_keys_published = True

    # Olm sessions ---------------------------------------------------------------------------------------------
    def olm_sessions(self, peer_curve25519: str) -> list[OlmSessionEntry]:
        entries = self._olm.get(peer_curve25519)
        if entries is None:
            entries = [
                OlmSessionEntry(session_id, peer, vodozemac.Session.from_pickle(pickle, self._key), last_used)
                for session_id, (peer, pickle, last_used) in self.rows.olm.items()
                if peer == peer_curve25519
            ]
            self._olm[peer_curve25519] = entries
        entries.sort(key=lambda e: e.last_used, reverse=True)
        return entries

    def _write_olm(self, peer_curve25519: str, session: vodozemac.Session, last_used: int) -> None:
        self.rows.olm[session.session_id] = (peer_curve25519, session.pickle(self._key), last_used)

    # Megolm sessions ------------------------------------------------------------------------------------------
    def inbound_group_session(self, sender_key: str, session_id: str) -> InboundGroupSession | None:
        cache_key = (sender_key, session_id)
        if cache_key not in self._inbound:
            row = self.rows.inbound.get(cache_key)
            record = None
            if row is not None:
                chat_id, user_id, device_id, ed25519, pickle = row
                inner = vodozemac.InboundGroupSession.from_pickle(pickle, self._key)
                record = InboundGroupSession(chat_id, sender_key, user_id, device_id, ed25519, inner)
            self._inbound[cache_key] = record
        return self._inbound[cache_key]

    def save_inbound_group_session(self, session: InboundGroupSession) -> None:
        with self.transaction():
            self.rows.inbound[(session.sender_key, session.session_id)] = (
                session.chat_id,
                session.sender_user_id,
                session.sender_device_id,
                session.sender_ed25519,
                session.inner.pickle(self._key),
            )
        self._inbound[(session.sender_key, session.session_id)] = session

    def outbound_group_session(self, chat_id: int) -> OutboundGroupSession | None:
        if chat_id not in self._outbound:
            row = self.rows.outbound.get(chat_id)
            record = None
            if row is not None and not row[3]:
                inner = vodozemac.GroupSession.from_pickle(row[0], self._key)
                record = OutboundGroupSession(chat_id, inner, row[1], set(row[2]))
            self._outbound[chat_id] = record
        return self._outbound[chat_id]

    def _write_outbound(self, session: OutboundGroupSession, *, leased: bool) -> None:
        pickle = session.inner.pickle(self._key)
        self.rows.outbound[session.chat_id] = (pickle, session.created_at, frozenset(session.shared_with), leased)

    def _delete_outbound(self, chat_id: int) -> None:
        self.rows.outbound.pop(chat_id, None)

    def record_megolm_index(self, sender_key: str, session_id: str, message_index: int, message_id: str) -> str:
        seen = self.rows.seen.setdefault((sender_key, session_id), {})
        return seen.setdefault(message_index, message_id)

    # devices --------------------------------------------------------------------------------------------------
    def device(self, user_id: int, device_id: str) -> DeviceRecord | None:
        cache_key = (user_id, device_id)
        if cache_key not in self._devices:
            row = self.rows.devices.get(cache_key)
            self._devices[cache_key] = dataclasses.replace(row) if row is not None else None
        return self._devices[cache_key]

    def device_by_curve25519(self, curve25519: str) -> DeviceRecord | None:
        for (user_id, device_id), row in self.rows.devices.items():
            if row.curve25519 == curve25519:
                return self.device(user_id, device_id)
        return None

    def save_device(self, record: DeviceRecord) -> None:
        with self.transaction():
            self.rows.devices[(record.user_id, record.device_id)] = dataclasses.replace(record)
        self._devices[(record.user_id, record.device_id)] = record
