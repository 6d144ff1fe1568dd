"""The encrypted local crypto store (a `CryptoStore`): one SQLite file in the caller's profile directory.

Every secret (the account and all Olm/Megolm session pickles) is encrypted with vodozemac's pickle
encryption under a key derived (HKDF-SHA256) from the caller's 32-byte store key; the SDK keeps that key
in the OS keyring. Public metadata (device ids, public identity keys, trust states, seen message indices)
is stored in clear. A verifier row, sealed with AES-256-GCM under a second derived key, makes a wrong key
fail at open time with `StoreKeyError` instead of deep inside a later unpickle.

Outbound Megolm sessions are not rewritten after every message (that would triple the cost of a send).
Instead a session is *leased* (its row marked in use) before this store first encrypts with it, and
written back un-leased by `flush()`/`close()`. A leased row found at load time means a crash or another
process: that session is discarded and a new one started, so a message index is never used twice.

Seen Megolm indices (replay protection) are checked in memory and written in batches of
`replay_flush_every` (and at every `flush()`/`close()`): a durable write per decrypted message would
double its cost. The SDK calls `flush()` after each page of messages; a crash in between forgets at most
that many recent indices.

One open store per directory: a second open (another process, or the same one) raises `StoreLocked`,
because two holders of the same Olm ratchet would reuse its message keys.
Not thread-safe: use one store from one thread at a time (the SDK's event loop).
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import IO

import vodozemac
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .account import DeviceAccount
from .cached_store import CachedStore
from .errors import StoreError, StoreKeyError, StoreLocked
from .megolm import InboundGroupSession, OutboundGroupSession
from .store import DeviceRecord, OlmSessionEntry, TrustState

STORE_FILE = "crypto.sqlite3"
LOCK_FILE = "crypto.lock"
SCHEMA_VERSION = 1
_VERIFIER_PLAINTEXT = b"melo crypto store v1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS account (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    user_id INTEGER NOT NULL, device_id TEXT NOT NULL, pickle TEXT NOT NULL,
    device_keys_published INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS olm_sessions (
    session_id TEXT PRIMARY KEY, peer_curve25519 TEXT NOT NULL, pickle TEXT NOT NULL, last_used INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS olm_sessions_peer ON olm_sessions (peer_curve25519);
CREATE TABLE IF NOT EXISTS inbound_group_sessions (
    sender_key TEXT NOT NULL, session_id TEXT NOT NULL, chat_id INTEGER NOT NULL,
    sender_user_id INTEGER NOT NULL, sender_device_id TEXT NOT NULL, sender_ed25519 TEXT NOT NULL,
    pickle TEXT NOT NULL, PRIMARY KEY (sender_key, session_id));
CREATE TABLE IF NOT EXISTS outbound_group_sessions (
    chat_id INTEGER PRIMARY KEY, pickle TEXT NOT NULL, created_at REAL NOT NULL, shared_with TEXT NOT NULL,
    leased INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS megolm_seen (
    sender_key TEXT NOT NULL, session_id TEXT NOT NULL, message_index INTEGER NOT NULL, message_id TEXT NOT NULL,
    PRIMARY KEY (sender_key, session_id, message_index));
CREATE TABLE IF NOT EXISTS devices (
    user_id INTEGER NOT NULL, device_id TEXT NOT NULL, curve25519 TEXT NOT NULL, ed25519 TEXT NOT NULL,
    trust TEXT NOT NULL, pending_curve25519 TEXT, pending_ed25519 TEXT, PRIMARY KEY (user_id, device_id));
CREATE INDEX IF NOT EXISTS devices_curve ON devices (curve25519);
"""


def _lock_directory(path: Path) -> IO[str]:
    handle = open(path, "a")
    if sys.platform != "win32":
        import fcntl

        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            handle.close()
            raise StoreLocked(f"the crypto store in {path.parent} is open elsewhere") from exc
    return handle


def _derive(key: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"melo-crypto-store/" + purpose).derive(key)


class SqliteCryptoStore(CachedStore):
    """The `CryptoStore` of a device: SQLite-backed, pickle-encrypted, with in-memory caches of the live
    vodozemac objects."""

    def __init__(self, directory: str | os.PathLike[str], key: bytes, *, replay_flush_every: int = 64) -> None:
        if not isinstance(key, bytes | bytearray) or len(key) != 32:
            raise StoreKeyError("the crypto store key must be exactly 32 bytes")
        self.path = Path(directory) / STORE_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = _lock_directory(self.path.parent / LOCK_FILE)
        self._pickle_key = _derive(bytes(key), b"pickle")
        self._verifier_key = _derive(bytes(key), b"verifier")
        self._depth = 0
        self._clock = 0
        self._closed = False
        self._replay_flush_every = max(1, replay_flush_every)
        self._seen: dict[tuple[str, str], dict[int, str]] = {}
        self._seen_pending: list[tuple[str, str, int, str]] = []
        self._reset_caches()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            self._lock.close()
            raise StoreKeyError(f"{self.path} is not a Melo crypto store: {exc}") from exc
        try:
            self._check_or_set_verifier()
        except BaseException:
            self._db.close()
            self._lock.close()
            raise
        row = self._db.execute("SELECT COALESCE(MAX(last_used), 0) FROM olm_sessions").fetchone()
        self._clock = int(row[0])

    def _reset_caches(self) -> None:
        super()._reset_caches()
        self._curve_index: dict[str, tuple[int, str] | None] = {}

    def _check_or_set_verifier(self) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE name = 'verifier'").fetchone()
        aead = AESGCM(self._verifier_key)
        if row is None:
            nonce = os.urandom(12)
            sealed = nonce + aead.encrypt(nonce, _VERIFIER_PLAINTEXT, b"verifier")
            with self.transaction():
                self._db.execute("INSERT INTO meta (name, value) VALUES ('verifier', ?)", (sealed,))
                self._db.execute("INSERT INTO meta (name, value) VALUES ('schema', ?)", (SCHEMA_VERSION,))
            return
        blob = bytes(row[0])
        try:
            plaintext = aead.decrypt(blob[:12], blob[12:], b"verifier")
        except (InvalidTag, ValueError) as exc:
            raise StoreKeyError(f"wrong key for the crypto store at {self.path}") from exc
        if plaintext != _VERIFIER_PLAINTEXT:
            raise StoreKeyError(f"wrong key for the crypto store at {self.path}")
        schema = self._db.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
        if schema is None or int(schema[0]) > SCHEMA_VERSION:
            raise StoreError(f"the crypto store at {self.path} has an unknown schema version")

    def _flush_pending(self) -> None:
        self._flush_seen()

    def _release(self) -> None:
        self._db.close()
        self._lock.close()  # closing the descriptor releases the lock

    def __enter__(self) -> SqliteCryptoStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _begin(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def _commit(self) -> None:
        self._db.execute("COMMIT")

    def _rollback(self) -> None:
        self._db.execute("ROLLBACK")

    # account ------------------------------------------------------------------------------------------
    def load_account(self) -> DeviceAccount | None:
        if self._account is None:
            row = self._db.execute("SELECT user_id, device_id, pickle FROM account WHERE id = 1").fetchone()
            if row is None:
                return None
            self._account = DeviceAccount.from_pickle(row[2], self._pickle_key, row[0], row[1])
        return self._account

    def save_account(self, account: DeviceAccount) -> None:
        with self.transaction():
            self._db.execute(
                "INSERT INTO account (id, user_id, device_id, pickle) VALUES (1, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET user_id = excluded.user_id, device_id = excluded.device_id, "
                "pickle = excluded.pickle",
                (account.user_id, account.device_id, account.pickle(self._pickle_key)),
            )
        self._account = account

    def device_keys_published(self) -> bool:
        row = self._db.execute("SELECT device_keys_published FROM account WHERE id = 1").fetchone()
        return bool(row and row[0])

    def set_device_keys_published(self) -> None:
        with self.transaction():
            self._db.execute("UPDATE account SET device_keys_published = 1 WHERE id = 1")

    # Olm sessions -------------------------------------------------------------------------------------
    def olm_sessions(self, peer_curve25519: str) -> list[OlmSessionEntry]:
        """Sessions with this peer, most recently used first."""
        entries = self._olm.get(peer_curve25519)
        if entries is None:
            entries = []
            for session_id, pickle, last_used in self._db.execute(
                "SELECT session_id, pickle, last_used FROM olm_sessions WHERE peer_curve25519 = ?", (peer_curve25519,)
            ):
                entries.append(OlmSessionEntry(session_id, peer_curve25519, self._unpickle_session(pickle), last_used))
            self._olm[peer_curve25519] = entries
        entries.sort(key=lambda e: e.last_used, reverse=True)
        return entries

    def _write_olm(self, peer_curve25519: str, session: vodozemac.Session, last_used: int) -> None:
        self._db.execute(
            "INSERT INTO olm_sessions (session_id, peer_curve25519, pickle, last_used) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (session_id) DO UPDATE SET pickle = excluded.pickle, last_used = excluded.last_used",
            (session.session_id, peer_curve25519, session.pickle(self._pickle_key), last_used),
        )

    def _unpickle_session(self, pickle: str) -> vodozemac.Session:
        try:
            return vodozemac.Session.from_pickle(pickle, self._pickle_key)
        except vodozemac.PickleException as exc:
            raise StoreError("an Olm session pickle cannot be decrypted") from exc

    # Megolm sessions ----------------------------------------------------------------------------------
    def inbound_group_session(self, sender_key: str, session_id: str) -> InboundGroupSession | None:
        cache_key = (sender_key, session_id)
        if cache_key not in self._inbound:
            row = self._db.execute(
                "SELECT chat_id, sender_user_id, sender_device_id, sender_ed25519, pickle FROM inbound_group_sessions "
                "WHERE sender_key = ? AND session_id = ?",
                cache_key,
            ).fetchone()
            record = None
            if row is not None:
                try:
                    inner = vodozemac.InboundGroupSession.from_pickle(row[4], self._pickle_key)
                except vodozemac.PickleException as exc:
                    raise StoreError("an inbound group session pickle cannot be decrypted") from exc
                record = InboundGroupSession(row[0], sender_key, row[1], row[2], row[3], inner)
            self._inbound[cache_key] = record
        return self._inbound[cache_key]

    def save_inbound_group_session(self, session: InboundGroupSession) -> None:
        with self.transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO inbound_group_sessions (sender_key, session_id, chat_id, sender_user_id, "
                "sender_device_id, sender_ed25519, pickle) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    session.sender_key,
                    session.session_id,
                    session.chat_id,
                    session.sender_user_id,
                    session.sender_device_id,
                    session.sender_ed25519,
                    session.inner.pickle(self._pickle_key),
                ),
            )
        self._inbound[(session.sender_key, session.session_id)] = session

    def outbound_group_session(self, chat_id: int) -> OutboundGroupSession | None:
        """This device's sending session for the chat; None if there is none or its last user did not
        hand it back (crash, or another process): then it must not be continued."""
        if chat_id not in self._outbound:
            row = self._db.execute(
                "SELECT pickle, created_at, shared_with, leased FROM outbound_group_sessions WHERE chat_id = ?",
                (chat_id,),
            ).fetchone()
            record = None
            if row is not None and not row[3]:
                try:
                    inner = vodozemac.GroupSession.from_pickle(row[0], self._pickle_key)
                except vodozemac.PickleException as exc:
                    raise StoreError("an outbound group session pickle cannot be decrypted") from exc
                shared = {(int(u), str(d), str(c)) for u, d, c in json.loads(row[2])}
                record = OutboundGroupSession(chat_id, inner, float(row[1]), shared)
            self._outbound[chat_id] = record
        return self._outbound[chat_id]

    def lease_outbound_group_session(self, session: OutboundGroupSession) -> None:
        """Take the lease before the first encryption by this store object (a no-op afterwards)."""
        if session.chat_id not in self._leased:
            self.save_outbound_group_session(session)

    def _write_outbound(self, session: OutboundGroupSession, *, leased: bool) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO outbound_group_sessions (chat_id, pickle, created_at, shared_with, leased) "
            "VALUES (?, ?, ?, ?, ?)",
            (
                session.chat_id,
                session.inner.pickle(self._pickle_key),
                session.created_at,
                json.dumps(sorted(session.shared_with)),
                int(leased),
            ),
        )

    def _delete_outbound(self, chat_id: int) -> None:
        self._db.execute("DELETE FROM outbound_group_sessions WHERE chat_id = ?", (chat_id,))

    def record_megolm_index(self, sender_key: str, session_id: str, message_index: int, message_id: str) -> str:
        """Remember that this index was used by `message_id`; return the message id that first used it."""
        seen = self._seen.get((sender_key, session_id))
        if seen is None:
            seen = {
                int(i): str(m)
                for i, m in self._db.execute(
                    "SELECT message_index, message_id FROM megolm_seen WHERE sender_key = ? AND session_id = ?",
                    (sender_key, session_id),
                )
            }
            self._seen[(sender_key, session_id)] = seen
        first = seen.get(message_index)
        if first is not None:
            return first
        seen[message_index] = message_id
        self._seen_pending.append((sender_key, session_id, message_index, message_id))
        if len(self._seen_pending) >= self._replay_flush_every and self._depth == 0:
            self._flush_seen()
        return message_id

    def _flush_seen(self) -> None:
        if not self._seen_pending:
            return
        if self._depth:
            raise StoreError("seen indices are flushed outside transactions")
        with self.transaction():
            self._db.executemany(
                "INSERT OR IGNORE INTO megolm_seen (sender_key, session_id, message_index, "
                "message_id) VALUES (?, ?, ?, ?)",
                self._seen_pending,
            )
        self._seen_pending.clear()

    # devices ------------------------------------------------------------------------------------------
    def device(self, user_id: int, device_id: str) -> DeviceRecord | None:
        cache_key = (user_id, device_id)
        if cache_key not in self._devices:
            row = self._db.execute(
                "SELECT curve25519, ed25519, trust, pending_curve25519, pending_ed25519 FROM devices "
                "WHERE user_id = ? AND device_id = ?",
                cache_key,
            ).fetchone()
            self._devices[cache_key] = (
                DeviceRecord(user_id, device_id, row[0], row[1], TrustState(row[2]), row[3], row[4]) if row else None
            )
        return self._devices[cache_key]

    def device_by_curve25519(self, curve25519: str) -> DeviceRecord | None:
        if curve25519 not in self._curve_index:
            row = self._db.execute(
                "SELECT user_id, device_id FROM devices WHERE curve25519 = ?", (curve25519,)
            ).fetchone()
            self._curve_index[curve25519] = (int(row[0]), str(row[1])) if row else None
        found = self._curve_index[curve25519]
        return self.device(*found) if found else None

    def devices_of(self, user_id: int) -> list[DeviceRecord]:
        rows = self._db.execute(
            "SELECT device_id FROM devices WHERE user_id = ? ORDER BY device_id", (user_id,)
        ).fetchall()
        return [record for (device_id,) in rows if (record := self.device(user_id, device_id)) is not None]

    def save_device(self, record: DeviceRecord) -> None:
        with self.transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO devices (user_id, device_id, curve25519, ed25519, trust, pending_curve25519, "
                "pending_ed25519) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    record.user_id,
                    record.device_id,
                    record.curve25519,
                    record.ed25519,
                    record.trust.value,
                    record.pending_curve25519,
                    record.pending_ed25519,
                ),
            )
        self._devices[(record.user_id, record.device_id)] = record
        self._curve_index.clear()
