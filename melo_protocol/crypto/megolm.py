"""Megolm group sessions: one outbound session per (chat, sending device), inbound sessions per sender.

The outbound session rotates after a message or age budget, or when chat membership changes; its key is
shared (at the current index, so late joiners cannot read earlier messages) inside Olm to-device messages.
The Megolm plaintext is JSON that binds the chat id and the sending user and device, so a ciphertext
replayed into another chat, or attributed to another device, is rejected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import vodozemac

from .errors import DecryptionError
from .signing import MEGOLM_ALGORITHM

ROOM_KEY_TYPE = "m.room_key"
DeviceTriple = tuple[int, str, str]  # (user id, device id, curve25519 key)


@dataclass(frozen=True)
class RotationPolicy:
    """When an outbound session is replaced: after `max_messages` messages or `max_age_seconds`."""

    max_messages: int = 100
    max_age_seconds: float = 7 * 24 * 3600.0


@dataclass
class OutboundGroupSession:
    """This device's sending session for one chat, with the devices its key has been shared with."""

    chat_id: int
    inner: vodozemac.GroupSession
    created_at: float
    shared_with: set[DeviceTriple] = field(default_factory=set)

    @classmethod
    def new(cls, chat_id: int, now: float) -> OutboundGroupSession:
        return cls(chat_id, vodozemac.GroupSession(), now)

    @property
    def session_id(self) -> str:
        return self.inner.session_id

    @property
    def message_index(self) -> int:
        return self.inner.message_index

    def needs_rotation(self, now: float, policy: RotationPolicy) -> bool:
        return self.inner.message_index >= policy.max_messages or now - self.created_at >= policy.max_age_seconds

    def room_key(self) -> dict[str, Any]:
        """The `m.room_key` content: the session key at the CURRENT index (earlier messages stay unreadable)."""
        return {
            "algorithm": MEGOLM_ALGORITHM,
            "chat_id": self.chat_id,
            "session_id": self.inner.session_id,
            "session_key": self.inner.session_key.to_base64(),
        }

    def encrypt(self, content: dict[str, Any], *, sender_user_id: int, sender_device_id: str,
                sender_key: str) -> dict[str, Any]:
        """Encrypt `content`; return the E2EEnvelope-shaped dict the server stores and relays."""
        plaintext = json.dumps({
            "chat_id": self.chat_id,
            "content": content,
            "sender": sender_user_id,
            "sender_device": sender_device_id,
        }, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        message = self.inner.encrypt(plaintext)
        return {
            "algorithm": MEGOLM_ALGORITHM,
            "sender_key": sender_key,
            "session_id": self.inner.session_id,
            "ciphertext": message.to_base64(),
            "device_id": sender_device_id,
        }


@dataclass(frozen=True)
class GroupMessage:
    """A decrypted chat message, attributed to the device that shared the session key."""

    content: dict[str, Any]
    message_index: int
    sender_user_id: int
    sender_device_id: str
    sender_key: str
    session_id: str


@dataclass
class InboundGroupSession:
    """A received session: decrypts one sender device's messages in one chat."""

    chat_id: int
    sender_key: str
    sender_user_id: int
    sender_device_id: str
    sender_ed25519: str
    inner: vodozemac.InboundGroupSession

    @property
    def session_id(self) -> str:
        return self.inner.session_id

    @property
    def first_known_index(self) -> int:
        return self.inner.first_known_index

    @classmethod
    def from_room_key(cls, room_key: dict[str, Any], *, sender_key: str, sender_user_id: int,
                      sender_device_id: str, sender_ed25519: str) -> InboundGroupSession:
        """Build from an `m.room_key` content that arrived over an authenticated Olm channel."""
        try:
            if room_key["algorithm"] != MEGOLM_ALGORITHM:
                raise DecryptionError(f"unsupported room key algorithm {room_key['algorithm']!r}")
            chat_id = room_key["chat_id"]
            if not isinstance(chat_id, int) or isinstance(chat_id, bool):
                raise DecryptionError("room key without an integer chat_id")
            if room_key.get("exported") is True:  # re-shared from an index via export_at (no signature part)
                inner = vodozemac.InboundGroupSession.import_session(
                    vodozemac.ExportedSessionKey(room_key["session_key"]))
            else:
                inner = vodozemac.InboundGroupSession(vodozemac.SessionKey(room_key["session_key"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise DecryptionError(f"malformed room key: {exc}") from exc
        if inner.session_id != room_key.get("session_id"):
            raise DecryptionError("room key session_id does not match its session key")
        return cls(chat_id, sender_key, sender_user_id, sender_device_id, sender_ed25519, inner)

    def export_at(self, index: int) -> str | None:
        """The session key from `index` on, for re-sharing; None if `index` is before what we know."""
        exported = self.inner.export_at(index)
        return exported.to_base64() if exported is not None else None

    def decrypt(self, envelope: dict[str, Any], chat_id: int) -> GroupMessage:
        """Decrypt and check every binding; any failure is a `DecryptionError`."""
        if self.chat_id != chat_id:
            raise DecryptionError(f"session {self.session_id} belongs to another chat")
        if envelope.get("device_id") not in (None, self.sender_device_id):
            raise DecryptionError("envelope device_id does not match the session's device")
        try:
            message = vodozemac.MegolmMessage.from_base64(envelope["ciphertext"])
            if message.to_base64() != envelope["ciphertext"]:
                # vodozemac tolerates a tag turned into an unknown field when the value was 0 (see olm.py)
                raise DecryptionError("non-canonical Megolm message encoding")
            decrypted = self.inner.decrypt(message)
            payload = json.loads(decrypted.plaintext.decode("utf-8"))
        except (KeyError, TypeError, ValueError) as exc:  # Decode/MegolmDecryption/JSON/Unicode errors
            raise DecryptionError(f"cannot decrypt group message: {exc}") from exc
        if not isinstance(payload, dict) or not isinstance(payload.get("content"), dict):
            raise DecryptionError("group message plaintext is not a JSON object with content")
        if payload.get("chat_id") != chat_id:
            raise DecryptionError("group message was encrypted for another chat")
        if payload.get("sender") != self.sender_user_id or payload.get("sender_device") != self.sender_device_id:
            raise DecryptionError("group message names a sender other than the session's device")
        return GroupMessage(payload["content"], decrypted.message_index, self.sender_user_id,
                            self.sender_device_id, self.sender_key, self.session_id)
