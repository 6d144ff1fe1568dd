"""The local message cache: decrypted messages kept on this device for history, offline reading and
messages whose keys are gone, and the SDK's remembered state (chat kinds, direct-chat ids, member
device lists) that spares a one-shot ``melo send`` its look-ups. Every row is sealed with AES-256-GCM
under a key derived from the profile's store key (the one in the OS keyring), so the file alone
reveals nothing."""

import json
import os
import sqlite3
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from melo_protocol.client.events import Message


class MessageCache:
    def __init__(self, path: Path, store_key: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"melo message cache").derive(store_key)
        self._aead = AESGCM(key)
        self._db = sqlite3.connect(path)
        self._db.execute("CREATE TABLE IF NOT EXISTS messages (chat_id INTEGER, message_id INTEGER PRIMARY KEY, "
                         "seq INTEGER, blob BLOB)")
        self._db.execute("CREATE INDEX IF NOT EXISTS ix_chat_seq ON messages (chat_id, seq)")
        # the text of our own scheduled messages in E2E chats: the server holds only their envelopes
        self._db.execute("CREATE TABLE IF NOT EXISTS scheduled (scheduled_id INTEGER PRIMARY KEY, blob BLOB)")
        # remembered SDK state by name ("chat:12", "direct:bob", "recipients:12", …): JSON documents
        self._db.execute("CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, blob BLOB)")
        os.chmod(path, 0o600)

    def put(self, message: Message) -> None:
        data = asdict(message)
        data["created_at"] = message.created_at.isoformat()
        data["edited_at"] = message.edited_at.isoformat() if message.edited_at else None
        nonce = os.urandom(12)
        aad = f"{message.chat_id}:{message.id}".encode()
        blob = nonce + self._aead.encrypt(nonce, json.dumps(data).encode(), aad)
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO messages VALUES (?, ?, ?, ?)",
                             (message.chat_id, message.id, message.seq, blob))

    def _open(self, chat_id: int, message_id: int, blob: bytes) -> Message:
        data = json.loads(self._aead.decrypt(blob[:12], blob[12:], f"{chat_id}:{message_id}".encode()))
        data["created_at"] = datetime.fromisoformat(data["created_at"])
        data["edited_at"] = datetime.fromisoformat(data["edited_at"]) if data["edited_at"] else None
        return Message(**data)

    def get(self, chat_id: int, message_id: int) -> Message | None:
        row = self._db.execute("SELECT blob FROM messages WHERE chat_id = ? AND message_id = ?",
                               (chat_id, message_id)).fetchone()
        return self._open(chat_id, message_id, row[0]) if row else None

    def history(self, chat_id: int, *, before: int | None = None, limit: int = 50) -> list[Message]:
        rows = self._db.execute(
            "SELECT message_id, blob FROM messages WHERE chat_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
            (chat_id, before if before is not None else 2**62, limit)).fetchall()
        return [self._open(chat_id, mid, blob) for mid, blob in reversed(rows)]

    def message_id_at(self, chat_id: int, seq: int) -> int | None:
        """The id of this chat's last message at or before ``seq`` known here: what "read up to seq"
        means in message ids (other events, reactions or pins, have seqs too)."""
        row = self._db.execute("SELECT message_id FROM messages WHERE chat_id = ? AND seq <= ? "
                               "ORDER BY seq DESC LIMIT 1", (chat_id, seq)).fetchone()
        return int(row[0]) if row else None

    def put_scheduled(self, scheduled_id: int, text: str) -> None:
        nonce = os.urandom(12)
        blob = nonce + self._aead.encrypt(nonce, text.encode(), f"scheduled:{scheduled_id}".encode())
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO scheduled VALUES (?, ?)", (scheduled_id, blob))

    def scheduled_text(self, scheduled_id: int) -> str | None:
        row = self._db.execute("SELECT blob FROM scheduled WHERE scheduled_id = ?", (scheduled_id,)).fetchone()
        if row is None:
            return None
        return self._aead.decrypt(row[0][:12], row[0][12:], f"scheduled:{scheduled_id}".encode()).decode()

    def forget_scheduled_except(self, keep: set[int]) -> None:
        """Drop the texts of scheduled messages no longer pending (sent or cancelled)."""
        with self._db:
            for (sid,) in self._db.execute("SELECT scheduled_id FROM scheduled").fetchall():
                if sid not in keep:
                    self._db.execute("DELETE FROM scheduled WHERE scheduled_id = ?", (sid,))

    def put_state(self, name: str, doc: Any) -> None:
        nonce = os.urandom(12)
        blob = nonce + self._aead.encrypt(nonce, json.dumps(doc).encode(), f"state:{name}".encode())
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", (name, blob))

    def state(self, name: str) -> Any:
        """A remembered document, or None (never stored, dropped, or unreadable)."""
        row = self._db.execute("SELECT blob FROM state WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        try:
            return json.loads(self._aead.decrypt(row[0][:12], row[0][12:], f"state:{name}".encode()))
        except (InvalidTag, ValueError):
            return None

    def drop_state(self, name: str, *, prefix: bool = False) -> None:
        """Forget one remembered document, or (``prefix``) every one whose name starts so."""
        with self._db:
            if prefix:
                self._db.execute("DELETE FROM state WHERE substr(name, 1, ?) = ?", (len(name), name))
            else:
                self._db.execute("DELETE FROM state WHERE name = ?", (name,))

    def forget(self, chat_id: int, message_id: int) -> None:
        """Drop a message's copy (deleted, or gone with the chat's disappearing-messages timer)."""
        with self._db:
            self._db.execute("DELETE FROM messages WHERE chat_id = ? AND message_id = ?", (chat_id, message_id))

    def forget_through(self, chat_id: int, seq: int) -> int:
        """Drop every copy at or below ``seq`` in a chat (the server's retention removed them). Returns how many."""
        with self._db:
            gone = self._db.execute("DELETE FROM messages WHERE chat_id = ? AND seq <= ?", (chat_id, seq))
        return gone.rowcount

    def close(self) -> None:
        self._db.close()
