"""What both `CryptoStore`s share: live vodozemac objects cached over committed rows, nested transactions
that drop the caches on a rollback, the Olm use counter, and the leases of outbound Megolm sessions.

A store says only how its rows begin, commit and roll back, and how a row is written
(`SqliteCryptoStore`, `MemoryCryptoStore`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager

import vodozemac

from .account import DeviceAccount
from .errors import StoreError
from .megolm import InboundGroupSession, OutboundGroupSession
from .store import DeviceRecord, OlmSessionEntry


class CachedStore(ABC):
    _depth: int
    _clock: int
    _closed: bool

    def _reset_caches(self) -> None:
        self._account: DeviceAccount | None = None
        self._olm: dict[str, list[OlmSessionEntry]] = {}
        self._inbound: dict[tuple[str, str], InboundGroupSession | None] = {}
        self._outbound: dict[int, OutboundGroupSession | None] = {}
        self._devices: dict[tuple[int, str], DeviceRecord | None] = {}
        self._leased: set[int] = set()  # chats whose outbound session this store object holds the lease of

    # -- what a store provides -------------------------------------------------------------------------
    @abstractmethod
    def _begin(self) -> None: ...

    @abstractmethod
    def _commit(self) -> None: ...

    @abstractmethod
    def _rollback(self) -> None: ...

    @abstractmethod
    def _release(self) -> None:
        """Let go of what the store holds open (a file, a lock), after the last flush."""

    @abstractmethod
    def _write_olm(self, peer_curve25519: str, session: vodozemac.Session, last_used: int) -> None: ...

    @abstractmethod
    def _write_outbound(self, session: OutboundGroupSession, *, leased: bool) -> None: ...

    @abstractmethod
    def _delete_outbound(self, chat_id: int) -> None: ...

    @abstractmethod
    def _flush_pending(self) -> None:
        """Write what the store batches outside transactions."""

    # -- shared ------------------------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes so they commit together (e.g. the account that spent a one-time key + the new session).

        Nested uses join the outermost transaction. On an exception everything is rolled back and the
        in-memory caches are dropped, so callers reload the last committed state (e.g. the one-time key
        is still in the account).
        """
        if self._depth == 0:
            self._begin()
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth -= 1
            if self._depth == 0:
                self._rollback()
                self._reset_caches()  # also forgets leases: a rolled-back outbound session is never continued
            raise
        self._depth -= 1
        if self._depth == 0:
            self._commit()

    def flush(self) -> None:
        """Write what is batched and hand back the leased outbound sessions (ratchets moved in memory)."""
        self._flush_pending()
        with self.transaction():
            for chat_id in sorted(self._leased):
                session = self._outbound.get(chat_id)
                if session is not None:
                    self._write_outbound(session, leased=False)
        self._leased.clear()

    def close(self) -> None:
        if self._closed:
            return
        if self._depth:
            raise StoreError("close() inside a transaction")
        self.flush()
        self._release()
        self._closed = True
        self._reset_caches()

    def tick(self) -> int:
        """A monotonic counter used to order Olm sessions by last use (deterministic, no wall clock)."""
        self._clock += 1
        return self._clock

    @abstractmethod
    def olm_sessions(self, peer_curve25519: str) -> list[OlmSessionEntry]: ...

    def save_olm_session(self, peer_curve25519: str, session: vodozemac.Session) -> OlmSessionEntry:
        """Insert or update a session and mark it as the most recently used one for this peer."""
        entries = self.olm_sessions(peer_curve25519)
        last_used = self.tick()
        with self.transaction():
            self._write_olm(peer_curve25519, session, last_used)
        for entry in entries:
            if entry.session_id == session.session_id:
                entry.inner, entry.last_used = session, last_used
                break
        else:
            entry = OlmSessionEntry(session.session_id, peer_curve25519, session, last_used)
            entries.append(entry)
        entries.sort(key=lambda e: e.last_used, reverse=True)
        return entry

    def save_outbound_group_session(self, session: OutboundGroupSession) -> None:
        """Store the session leased: call before encrypting with a new session or after sharing it further."""
        with self.transaction():
            self._write_outbound(session, leased=True)
        self._outbound[session.chat_id] = session
        self._leased.add(session.chat_id)

    def holds_lease(self, chat_id: int) -> bool:
        return chat_id in self._leased

    def discard_outbound_group_session(self, chat_id: int) -> None:
        with self.transaction():
            self._delete_outbound(chat_id)
        self._outbound[chat_id] = None
        self._leased.discard(chat_id)
